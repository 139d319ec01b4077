// A host's secrets bundle in the store: put once under its digest, put again only when the copy
// there differs, or when asked for a fresh one (an ssm deploy's, which `cache gc` judges by age).
import { mkdtemp, rm, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FsStore } from "../store/fs-store.js";
import { getSecretsBundle, putSecretsBundle, secretsBundleKey } from "./secrets-store.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-secrets-store-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("putSecretsBundle", () => {
  it("leaves the same bundle as it is, unless asked for a fresh one", async () => {
    const store = new FsStore(join(work, "store"), { fsync: false });
    const sha = await putSecretsBundle(store, "web1", "ciphertext");
    const path = join(work, "store", secretsBundleKey("web1", sha));
    const old = new Date(Date.now() - 2 * 86400_000);
    await utimes(path, old, old);
    const modified = async () =>
      (await store.head(secretsBundleKey("web1", sha)))?.lastModified.getTime() ?? 0;
    expect(await putSecretsBundle(store, "web1", "ciphertext")).toBe(sha);
    expect(await modified()).toBeLessThan(Date.now() - 86400_000);
    expect(await putSecretsBundle(store, "web1", "ciphertext", { fresh: true })).toBe(sha);
    expect(await modified()).toBeGreaterThan(Date.now() - 60_000);
    expect(await getSecretsBundle(store, "web1", sha)).toBe("ciphertext");
    await store.close();
  });
});
