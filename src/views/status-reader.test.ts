import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OperationError } from "../errors.js";
import { hostStatusKey, type StatusRecord } from "../status/status.js";
import { writeStatus } from "../status/status-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { mapLimit } from "../util/pool.js";
import { StatusReader } from "./status-reader.js";

const SYSTEM = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1";

const record = (host: string, generation = 3): StatusRecord => ({
  version: 1,
  host,
  mode: "ssh",
  channel: null,
  seq: null,
  desired: SYSTEM,
  current: SYSTEM,
  generation,
  state: "success",
  phase: null,
  error: null,
  rolledBack: null,
  startedAt: "2026-11-25T10:00:00.000Z",
  updatedAt: "2026-11-25T10:00:05.000Z",
});

/** The store's own calls, counted: what a poll says it cost is checked against them. */
interface Counted {
  readonly store: ObjectStore;
  readonly calls: { get: number; list: number };
  /** While set, every GET fails as an unreachable store would. */
  failGets: boolean;
}

function counted(store: ObjectStore): Counted {
  const c: Counted = {
    calls: { get: 0, list: 0 },
    failGets: false,
    store: new Proxy(store, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop === "get") {
          return (...args: Parameters<ObjectStore["get"]>) => {
            c.calls.get++;
            if (c.failGets) throw new OperationError("store-unreachable", "the store is down");
            return target.get(...args);
          };
        }
        if (prop === "list") {
          return (...args: Parameters<ObjectStore["list"]>) => {
            c.calls.list++;
            return target.list(...args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    }),
  };
  return c;
}

let dir: string;
let store: ObjectStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-status-reader-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

describe("StatusReader", () => {
  it("GETs a record only when it is new or its etag moved; a poll where nothing changed is LISTs only", async () => {
    for (const h of ["a1", "a2", "a3"]) await writeStatus(store, record(h));
    const c = counted(store);
    const reader = new StatusReader(c.store);

    const first = await reader.poll();
    expect([...first.records.keys()].sort()).toEqual(["a1", "a2", "a3"]);
    expect(first).toMatchObject({ listCalls: 1, getCalls: 3 });
    expect(c.calls).toEqual({ list: 1, get: 3 });

    const unchanged = await reader.poll();
    expect(unchanged).toMatchObject({ listCalls: 1, getCalls: 0 });
    expect(c.calls).toEqual({ list: 2, get: 3 });
    expect(unchanged.records).toEqual(first.records);

    await writeStatus(store, record("a2", 8));
    const changed = await reader.poll();
    expect(changed).toMatchObject({ listCalls: 1, getCalls: 1 });
    expect(c.calls).toEqual({ list: 3, get: 4 });
    expect(changed.records.get("a2")?.generation).toBe(8);
    expect(changed.records.get("a1")).toEqual(record("a1"));

    // A new host is read; a host whose record is gone is dropped, without a GET.
    await writeStatus(store, record("a4"));
    await store.delete(hostStatusKey("a3"));
    const moved = await reader.poll();
    expect([...moved.records.keys()].sort()).toEqual(["a1", "a2", "a4"]);
    expect(moved).toMatchObject({ listCalls: 1, getCalls: 1 });
    expect(c.calls.get).toBe(5);
  });

  it("keeps an unreadable record its host's problem, and reads it again only once it changes", async () => {
    await writeStatus(store, record("a1"));
    await store.put(hostStatusKey("a2"), Buffer.from("not JSON"));
    await store.put(hostStatusKey("a3"), Buffer.from(JSON.stringify(record("a1"))));
    const reader = new StatusReader(store);
    const first = await reader.poll();
    expect([...first.records.keys()]).toEqual(["a1"]);
    expect(first.unreadable.get("a2")).toMatch(/status\/hosts\/a2\.json: not JSON/);
    expect(first.unreadable.get("a3")).toMatch(/the record names host 'a1', not a3/);
    expect((await reader.poll()).getCalls).toBe(0);
    await writeStatus(store, record("a2"));
    const mended = await reader.poll();
    expect(mended.getCalls).toBe(1);
    expect(mended.records.get("a2")).toEqual(record("a2"));
    expect(mended.unreadable.has("a2")).toBe(false);
  });

  it("reads only the hosts it is given", async () => {
    for (const h of ["a1", "a2", "a3"]) await writeStatus(store, record(h));
    const poll = await new StatusReader(store, { hosts: ["a2", "nope"] }).poll();
    expect([...poll.records.keys()]).toEqual(["a2"]);
    expect(poll.getCalls).toBe(1);
  });

  it("lists page after page (1,000 records each), reading meanwhile", async () => {
    const hosts = Array.from({ length: 1001 }, (_, i) => `h${i}`);
    await mapLimit(hosts, 32, (h) => writeStatus(store, record(h)));
    const poll = await new StatusReader(store, { hosts: ["h0", "h999", "h1000"] }).poll();
    expect(poll).toMatchObject({ listCalls: 2, getCalls: 3 });
    expect(poll.records.size).toBe(3);
  });

  it("throws a fault of the store once its reads settled, and forgets nothing it knew", async () => {
    for (const h of ["a1", "a2"]) await writeStatus(store, record(h));
    const c = counted(store);
    const reader = new StatusReader(c.store, { concurrency: 1 });
    await reader.poll();
    await writeStatus(store, record("a1", 9));
    await writeStatus(store, record("a3"));
    c.failGets = true;
    await expect(reader.poll()).rejects.toThrow(/the store is down/);
    // After the first failure no further GET starts.
    expect(c.calls.get).toBe(3);
    c.failGets = false;
    const after = await reader.poll();
    expect(after.getCalls).toBe(2);
    expect(after.records.get("a1")?.generation).toBe(9);
    expect(after.records.get("a2")).toEqual(record("a2"));
  });
});
