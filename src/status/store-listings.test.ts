// The listings without names: channels, every channel's release numbers, and every host's
// status record with its etag, from LIST calls alone (no GET).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { listChannels, listReleaseSeqs, publishRelease } from "../release/release-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { wrapStore } from "../store/wrap-store.js";
import { statusRecord } from "./status.js";
import { listStatusRecords, writeStatus } from "./status-store.js";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-listings-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** `store`, failing any GET: a listing must not read bodies. */
function listOnly(inner: ObjectStore): ObjectStore {
  return wrapStore(inner, {
    get: (async (key: string) => {
      throw new Error(`GET ${key}`);
    }) as ObjectStore["get"],
  });
}

const SYSTEM = `/nix/store/${"a".repeat(32)}-system` as StorePath;

describe("listings without names", () => {
  it("finds the channels, each one's release numbers, and every host's record with its etag", async () => {
    const key = generateSecretKey("listings-1");
    for (const channel of ["web", "db", "web", "web"]) {
      await publishRelease(store, {
        channel,
        hosts: { h1: { path: SYSTEM } },
        kind: "deploy",
        action: "switch",
        health: { http: [], commands: [] },
        confirmTimeout: 30,
        key,
      });
    }
    // A release file of a channel whose channel file is gone still counts.
    await store.delete("channels/db.json");
    await store.put("releases/web/not-a-release.txt", Buffer.from("x"));
    const now = new Date().toISOString();
    for (const host of ["web1", "web2", "db1"]) {
      await writeStatus(
        store,
        statusRecord({
          host,
          mode: "ssh",
          release: null,
          desired: SYSTEM,
          what: { state: "success", phase: null, error: null, rolledBack: null },
          startedAt: now,
          updatedAt: now,
        }),
      );
    }
    const lister = listOnly(store);
    expect(await listChannels(lister)).toEqual(["web"]);
    expect(Object.fromEntries(await listReleaseSeqs(lister))).toEqual({ db: [1], web: [1, 2, 3] });
    const records = await listStatusRecords(lister);
    expect(records.map((r) => r.host)).toEqual(["db1", "web1", "web2"]);
    const before = records.find((r) => r.host === "web1")?.etag;
    expect(before).toBeTruthy();
    // A record written again gets a new etag: a reader GETs only the records that moved.
    await new Promise((r) => setTimeout(r, 10));
    await writeStatus(
      store,
      statusRecord({
        host: "web1",
        mode: "ssh",
        release: null,
        desired: SYSTEM,
        what: { state: "failed", phase: "switch", error: "x", rolledBack: true },
        startedAt: now,
        updatedAt: new Date().toISOString(),
      }),
    );
    const after = await listStatusRecords(lister);
    expect(after.find((r) => r.host === "web1")?.etag).not.toBe(before);
    expect(after.find((r) => r.host === "web2")?.etag).toBe(
      records.find((r) => r.host === "web2")?.etag,
    );
  });
});
