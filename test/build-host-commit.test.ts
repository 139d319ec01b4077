// A build host that pushes cannot sign what it likes into the cache. The deployer's
// commit of a build host's report (cache/commit-narinfos.ts) against a real directory store:
// it signs a path only once the NAR's bytes in the cache hash to what the report and the host's
// Nix say, never signs again a path the cache has (the attack: a shared path claimed with a NAR
// of the build host's own), and never replaces a narinfo another writer put meanwhile.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CommitInput, commitReportedNars } from "../src/cache/commit-narinfos.js";
import { narInfoKey } from "../src/cache/layout.js";
import type { NarReport } from "../src/cache/nar-report.js";
import { readNarInfo } from "../src/cache/read.js";
import type { PathInfo } from "../src/nix/closure.js";
import { generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import { buildNar, narNode } from "../src/nix/nar-write.js";
import { checkNarInfoSignatures, type NarInfo } from "../src/nix/narinfo.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { wrapStore } from "../src/store/wrap-store.js";
import { putSyntheticPath, syntheticNar, syntheticPath } from "../support/synthetic-cache.js";

const fleetKey = generateSecretKey("fleet-1");
let dir: string;
let store: ObjectStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-commit-"));
  store = await openStore(`file://${dir}`);
});

afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** What a build host stores for `path` holding `contents`: its NAR, and the narinfo it reports. */
async function storedByHost(path: StorePath, contents: string, references: StorePath[] = []) {
  const stored = syntheticNar(path, references, contents);
  await store.put(stored.info.url, stored.nar);
  return stored;
}

/** What the build host's own Nix records of a reported path (it agrees with the report). */
function recorded(info: NarInfo): PathInfo {
  return {
    path: info.storePath,
    narHash: info.narHash,
    narSize: info.narSize,
    references: info.references,
    deriver: undefined,
    sigs: [],
    ca: undefined,
  };
}

function input(nars: NarInfo[], extra: Partial<CommitInput> = {}): CommitInput {
  const report: NarReport = { format: "nixship-nars-v1", nars, present: [] };
  return {
    store,
    key: fleetKey,
    source: "bh1",
    report,
    closure: nars.map(recorded),
    ...extra,
  };
}

async function narinfoText(path: StorePath): Promise<string | undefined> {
  const got = await store.get(narInfoKey(path));
  if (!got) return undefined;
  const chunks: Buffer[] = [];
  for await (const c of got.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

describe("committing a build host's report", () => {
  it("signs a new path whose NAR in the cache hashes to what the report says", async () => {
    const path = syntheticPath("honest", "web-app");
    const { info } = await storedByHost(path, "the app");
    const summary = await commitReportedNars(input([info]));
    expect(summary.committed).toEqual([path]);
    const stored = await readNarInfo(store, path);
    expect(stored?.narHash.equals(info.narHash)).toBe(true);
    expect(checkNarInfoSignatures(stored as NarInfo, [publicKeyOf(fleetKey)])).toEqual({
      ok: true,
      keyName: "fleet-1",
    });
  });

  it("never signs again a path the cache has: a shared path claimed with a NAR of its own", async () => {
    const shared = syntheticPath("share", "example-web-share");
    await putSyntheticPath(store, fleetKey, shared, [], "the fleet's share");
    const before = await narinfoText(shared);
    // The build host's Nix records its own content for the shared path, and it stored that NAR.
    const { info: forged } = await storedByHost(shared, "the attacker's share");
    const app = syntheticPath("app", "web-app");
    const { info: appInfo } = await storedByHost(app, "the app", [shared]);
    const summary = await commitReportedNars(input([forged, appInfo]));
    expect(summary.committed).toEqual([app]);
    expect(summary.alreadyPresent).toBe(1);
    expect(await narinfoText(shared)).toBe(before);
    const kept = await readNarInfo(store, shared);
    expect(kept?.narHash.equals(forged.narHash)).toBe(false);
  });

  it("refuses a report whose NAR bytes in the cache are not what it says, and writes nothing", async () => {
    const good = syntheticPath("good", "web-lib");
    const { info: goodInfo } = await storedByHost(good, "a library");
    const lied = syntheticPath("lied", "web-app");
    const { info } = await storedByHost(lied, "honest bytes");
    // The object at the reported key holds other bytes of the same length.
    const other = buildNar(narNode.regular("forged bytes"));
    expect(other.length).toBe(info.fileSize);
    await store.put(info.url, other);
    const commit = commitReportedNars(input([goodInfo, info]));
    await expect(commit).rejects.toMatchObject({ code: "build-host-refused" });
    await expect(commit).rejects.toThrow(
      `refused the push from bh1: ${lied} has a NAR in the cache that does not match its report`,
    );
    expect(await narinfoText(lied)).toBeUndefined();
    expect(await narinfoText(good)).toBeUndefined();
  });

  it("puts a narinfo only if absent: one another writer put meanwhile stays", async () => {
    const path = syntheticPath("race", "web-app");
    const { info } = await storedByHost(path, "the app");
    // Another writer's narinfo lands between the deployer's look and its put.
    await putSyntheticPath(store, fleetKey, path, [], "the other writer's app");
    const before = await narinfoText(path);
    const blind = wrapStore(store, {
      head: async (key) => (key === narInfoKey(path) ? undefined : store.head(key)),
    });
    await commitReportedNars(input([info], { store: blind }));
    expect(await narinfoText(path)).toBe(before);
  });
});
