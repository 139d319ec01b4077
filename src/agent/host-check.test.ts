import { mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { publishRelease } from "../release/release-store.js";
import { FsStore } from "../store/fs-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { checkHostNamed, checkHostNamedOnce, NAMED_FILE } from "./host-check.js";

const key = generateSecretKey("release-1");
const keys = [publicKeyOf(key)];
const path = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-web" as StorePath;
let dir: string;
let store: FsStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-host-check-"));
  store = new FsStore(join(dir, "bucket"), { fsync: false });
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function publish(hosts: readonly string[], signer = key) {
  return publishRelease(store, {
    channel: "prod",
    hosts: Object.fromEntries(hosts.map((h) => [h, { path }])),
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 0,
    key: signer,
  });
}

describe("checkHostNamed", () => {
  it("lets the agent start before the channel's first release", async () => {
    await expect(checkHostNamed(store, "prod", "vm", keys)).resolves.toBeUndefined();
  });

  it("accepts a host the current release, or an earlier one, names", async () => {
    await publish(["web1", "web2"]);
    await publish(["web2"]);
    await expect(checkHostNamed(store, "prod", "web2", keys)).resolves.toBeUndefined();
    await expect(checkHostNamed(store, "prod", "web1", keys)).resolves.toBeUndefined();
  });

  it("refuses a name no release named, saying which name and which names there are", async () => {
    await publish(["web1", "web2"]);
    // A release signed by another key does not count.
    await publish(["web1", "vm"], generateSecretKey("someone-1"));
    await publish(["web1", "web2"]);
    const err = await checkHostNamed(store, "prod", "vm", keys).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ code: "host-not-in-channel" });
    expect((err as InputError).message).toMatch(/names this host "vm"/);
    expect((err as InputError).hint).toMatch(/set "host".*--host.*web1, web2/);
  });
});

describe("checkHostNamedOnce", () => {
  /** The store, its GETs counted. */
  const counted = (): { readonly store: ObjectStore; readonly gets: () => number } => {
    let gets = 0;
    const wrapped = Object.create(store) as ObjectStore;
    Object.assign(wrapped, {
      get: (...args: Parameters<ObjectStore["get"]>) => {
        gets++;
        return store.get(...args);
      },
    });
    return { store: wrapped, gets: () => gets };
  };

  it("reads the releases at the first start only, once a release named the host", async () => {
    const stateDir = join(dir, "state");
    await mkdir(stateDir);
    // Before the first release: nothing proved, nothing marked.
    await checkHostNamedOnce(store, "prod", "web1", keys, stateDir);
    await expect(stat(join(stateDir, NAMED_FILE))).rejects.toThrow(/ENOENT/);
    await publish(["web1"]);
    for (let i = 0; i < 45; i++) await publish(["web2"]);
    const first = counted();
    await checkHostNamedOnce(first.store, "prod", "web1", keys, stateDir);
    expect(first.gets()).toBeGreaterThan(45);
    expect((await stat(join(stateDir, NAMED_FILE))).mode & 0o777).toBe(0o600);
    // Restarted (as systemd does after every exit): no release read.
    const again = counted();
    await checkHostNamedOnce(again.store, "prod", "web1", keys, stateDir);
    expect(again.gets()).toBe(0);
    // Another name, or another channel, is checked afresh (and refused).
    await expect(checkHostNamedOnce(store, "prod", "web9", keys, stateDir)).rejects.toMatchObject({
      code: "host-not-in-channel",
    });
    expect(JSON.parse(await readFile(join(stateDir, NAMED_FILE), "utf8"))).toEqual({
      channel: "prod",
      host: "web1",
    });
  });
});
