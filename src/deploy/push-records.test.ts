import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import { rolloutKey } from "../status/rollout.js";
import { readStatus } from "../status/status-store.js";
import { openStore } from "../store/url.js";
import { lastWordsPending, sayLastWords } from "../util/last-words.js";
import type { HostResult } from "./events.js";
import { PushRecords, recordResults, recordRollbacks } from "./push-records.js";

const V1 = "/nix/store/11111111111111111111111111111111-nixos-system-web1" as StorePath;
const V2 = "/nix/store/22222222222222222222222222222222-nixos-system-web1" as StorePath;

let dir: string;
let url: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-push-records-"));
  url = `file://${dir}?fsync=false`;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

async function read(host: string) {
  const store = await openStore(url);
  try {
    return await readStatus(store, host);
  } finally {
    await store.close();
  }
}

describe("push records", () => {
  it("a deploy's record names the system each host ran before it", async () => {
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "a1",
          desired: V2,
          seconds: 3,
          outcome: { status: "activated", generation: 5, previous: V1 },
        },
        {
          host: "a2",
          desired: V2,
          seconds: 3,
          outcome: { status: "failed", phase: "health", message: "no", rolledBack: true },
        },
        {
          host: "a3",
          desired: V2,
          seconds: 0,
          outcome: { status: "skipped", reason: "up-to-date" },
        },
        {
          host: "a4",
          desired: V2,
          seconds: 0,
          outcome: { status: "skipped", reason: "not-started" },
        },
        {
          host: "a5",
          desired: V2,
          seconds: 1,
          outcome: { status: "failed", phase: "connect", message: "no route", rolledBack: false },
        },
        {
          host: "a6",
          desired: V2,
          seconds: 130,
          outcome: {
            status: "failed",
            phase: "switch",
            message: "interrupted, and no result 120s later: the host is still settling",
            rolledBack: false,
            settling: true,
          },
        },
        {
          host: "a7",
          desired: V2,
          seconds: 2,
          outcome: {
            status: "failed",
            phase: "copy",
            message: "interrupted (SIGTERM) while copying",
            rolledBack: false,
          },
        },
        {
          host: "a8",
          desired: V2,
          seconds: 2,
          outcome: { status: "failed", phase: "realise", message: "bad sig", rolledBack: false },
        },
        {
          host: "a9",
          desired: V2,
          seconds: 2,
          outcome: { status: "failed", phase: "switch", message: "no", rolledBack: false },
        },
      ],
      {
        action: "switch",
        hosts: [
          { host: "a1", current: V1, generation: 4 },
          { host: "a2", current: V1, generation: 4 },
          { host: "a3", current: V2, generation: 7 },
          { host: "a4", current: V1, generation: 4 },
          { host: "a5", current: V1, generation: 4 },
          { host: "a6", current: V1, generation: 4 },
          { host: "a7", current: V1, generation: 4 },
          { host: "a8", current: V1, generation: 4 },
          { host: "a9", current: V1, generation: 4 },
        ],
      },
    );
    expect(await read("a1")).toMatchObject({ desired: V2, current: V2, previous: V1 });
    // Rolled back: it runs what it ran before, at that generation (not "null").
    expect(await read("a2")).toMatchObject({
      state: "failed",
      rolledBack: true,
      current: V1,
      generation: 4,
    });
    expect(await read("a3")).toMatchObject({ state: "success", current: V2, generation: 7 });
    expect(await read("a3")).not.toHaveProperty("previous");
    expect(await read("a4")).toBeUndefined();
    // Never reached: the deploy changed nothing there, and its rollout record says it missed it.
    expect(await read("a5")).toBeUndefined();
    // Left settling: where it ends was not seen, and its record keeps its word (none here).
    expect(await read("a6")).toBeUndefined();
    // Failed (or interrupted) before anything changed there: it runs what it ran, behind the
    // rollout, not failed.
    expect(await read("a7")).toBeUndefined();
    expect(await read("a8")).toBeUndefined();
    // A failed switch may have changed what it runs: its record says it failed.
    expect(await read("a9")).toMatchObject({ state: "failed", phase: "switch", desired: V2 });
  });

  it("a rollback's record names the system each host went back to; a failed one writes none", async () => {
    const warning = await recordRollbacks(url, "ssh", [
      { host: "a1", outcome: { status: "rolled-back", generation: 4, path: V1 } },
      { host: "a2", outcome: { status: "failed", message: "no generation before 1" } },
    ]);
    expect(warning).toBeUndefined();
    expect(await read("a1")).toMatchObject({
      mode: "ssh",
      desired: V1,
      current: V1,
      generation: 4,
      state: "success",
    });
    expect(await read("a2")).toMatchObject({ state: "failed", desired: V2 });
  });

  it("a record another deploy wrote after this one was done with the host is kept: it is newer", async () => {
    const V3 = "/nix/store/33333333333333333333333333333333-nixos-system-web1" as StorePath;
    const plan = { action: "switch" as const, hosts: [{ host: "b1", current: V1, generation: 4 }] };
    // Deploy A was done with b1 (V2, generation 5) at doneA, then went on with other waves.
    const doneA = new Date();
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Deploy B reached b1 meanwhile, moved it to V3 and recorded that at once.
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "b1",
          desired: V3,
          seconds: 2,
          outcome: { status: "activated", generation: 6, previous: V2 },
        },
      ],
      { action: "switch", hosts: [{ host: "b1", current: V2, generation: 5 }] },
    );
    // A's records, written when its whole rollout ends, leave B's word on b1.
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "b1",
          desired: V2,
          seconds: 2,
          outcome: { status: "activated", generation: 5, previous: V1 },
        },
      ],
      plan,
      undefined,
      new Map([["b1", doneA]]),
    );
    expect(await read("b1")).toMatchObject({ current: V3, previous: V2, generation: 6 });
    // A record older than the host's end is A's to replace.
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "b1",
          desired: V2,
          seconds: 2,
          outcome: { status: "activated", generation: 7, previous: V3 },
        },
      ],
      { action: "switch", hosts: [{ host: "b1", current: V3, generation: 6 }] },
      undefined,
      new Map([["b1", new Date()]]),
    );
    expect(await read("b1")).toMatchObject({ current: V2, previous: V3, generation: 7 });
  });

  it("a skipped host keeps its generation and the system it ran before", async () => {
    const plan = { action: "switch" as const, hosts: [{ host: "k1", current: V1, generation: 3 }] };
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "k1",
          desired: V2,
          seconds: 2,
          outcome: { status: "activated", generation: 4, previous: V1 },
        },
      ],
      plan,
    );
    // The next deploy finds it up to date; its survey said nothing of its generation.
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "k1",
          desired: V2,
          seconds: 0,
          outcome: { status: "skipped", reason: "up-to-date" },
        },
      ],
      { action: "switch", hosts: [{ host: "k1", current: V2, generation: undefined }] },
    );
    expect(await read("k1")).toMatchObject({
      state: "success",
      current: V2,
      generation: 4,
      previous: V1,
    });
  });

  it("a host the deploy moved names its rollout; a host it left alone keeps who put its system there", async () => {
    const first = {
      kind: "rollout" as const,
      key: "status/rollouts/8235869599999-0123456789ab.json",
    };
    const second = {
      kind: "rollout" as const,
      key: "status/rollouts/8235869500000-ba9876543210.json",
    };
    const activated = (host: string) => ({
      host,
      desired: V2,
      seconds: 2,
      outcome: { status: "activated" as const, generation: 4, previous: V1 },
    });
    await recordResults(
      url,
      "ssh",
      [activated("o1"), activated("o2")],
      {
        action: "switch",
        hosts: [
          { host: "o1", current: V1, generation: 3 },
          { host: "o2", current: V1, generation: 3 },
        ],
      },
      first,
    );
    expect(await read("o1")).toMatchObject({ origin: first });
    // The next deploy: o1 up to date, o2 failed its checks and went back to what it ran.
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "o1",
          desired: V2,
          seconds: 0,
          outcome: { status: "skipped", reason: "up-to-date" },
        },
        {
          host: "o2",
          desired: V1,
          seconds: 3,
          outcome: { status: "failed", phase: "health", message: "no", rolledBack: true },
        },
      ],
      {
        action: "switch",
        hosts: [
          { host: "o1", current: V2, generation: 4 },
          { host: "o2", current: V2, generation: 4 },
        ],
      },
      second,
    );
    expect(await read("o1")).toMatchObject({ origin: first });
    // o2 failed and went back to the system it ran: the first rollout's still.
    const o2 = await read("o2");
    expect(o2?.current).toBe(V2);
    expect(o2?.origin).toEqual(first);
    // A rollback names who ran it.
    await recordRollbacks(url, "ssh", [
      { host: "o1", outcome: { status: "rolled-back", generation: 3, path: V1 } },
    ]);
    expect((await read("o1"))?.origin).toMatchObject({
      kind: "rollback",
      by: expect.stringMatching(/@/),
    });
  });

  it("a store that cannot be written is a warning: the rollback happened", {
    timeout: 10_000,
  }, async () => {
    // A file where the store's directory should be: nothing can be written under it.
    const blocked = join(dir, "blocked");
    await writeFile(blocked, "");
    const warning = await recordRollbacks(`file://${blocked}?fsync=false`, "ssm", [
      { host: "a1", outcome: { status: "rolled-back", generation: 4, path: V1 } },
    ]);
    expect(warning).toMatch(
      /^the hosts were rolled back, but their status records could not be written/,
    );
  });
});

describe("PushRecords: each host's record written as it is done", () => {
  const plan = (host: string) => ({
    action: "switch" as const,
    hosts: [{ host, current: V1, generation: 4 }],
  });
  const activated = (host: string): HostResult => ({
    host,
    desired: V2,
    seconds: 2,
    outcome: { status: "activated", generation: 5, previous: V1 },
  });
  const rolledBack = (host: string): HostResult => ({
    host,
    desired: V2,
    seconds: 9,
    outcome: { status: "failed", phase: "bake", message: "its bake failed", rolledBack: true },
  });
  /** Resolves once the record of `host` says `current`, within 5 s. */
  async function recorded(host: string, current: string) {
    for (let i = 0; i < 100; i++) {
      const r = await read(host);
      if (r?.current === current) return r;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`${host}'s record never said ${current}`);
  }

  it("says a host done before the rollout ends, as a deployer killed then would leave it", async () => {
    const key = rolloutKey(new Date("2026-11-28T22:00:00Z"), "0123456789ab");
    const records = new PushRecords(url, "ssh", plan("p1"), { kind: "rollout", key });
    records.hostDone(activated("p1"), new Date());
    const early = await recorded("p1", V2);
    expect(early).toMatchObject({ state: "success", desired: V2, generation: 5 });
    expect(early.origin).toMatchObject({ kind: "rollout", key });
    // The rollout ends with the same result: nothing is written again.
    await records.finish([activated("p1")], new Map([["p1", new Date(0)]]));
    expect((await read("p1"))?.updatedAt).toBe(early.updatedAt);
  });

  it("a host done when a second interrupt comes: its record is among the last words", async () => {
    const records = new PushRecords(url, "ssh", plan("p4"), undefined);
    records.hostDone(activated("p4"), new Date());
    expect(lastWordsPending()).toBe(true);
    // What a second interrupt runs before it exits (cli/interrupts.ts).
    await sayLastWords(5000);
    expect(await read("p4")).toMatchObject({ state: "success", current: V2 });
    await records.finish([activated("p4")], new Map());
    expect(lastWordsPending()).toBe(false);
  });

  it("writes again a host whose result changed after it was done (its wave's bake took it back)", async () => {
    const records = new PushRecords(url, "ssh", plan("p2"), undefined);
    const done = new Date();
    records.hostDone(activated("p2"), done);
    await recorded("p2", V2);
    await records.finish([rolledBack("p2")], new Map([["p2", done]]));
    expect(await read("p2")).toMatchObject({ state: "failed", current: V1 });
  });

  it("keeps another deploy's newer word, written after the host was done", async () => {
    const V3 = "/nix/store/33333333333333333333333333333333-nixos-system-web1" as StorePath;
    const records = new PushRecords(url, "ssh", plan("p3"), undefined);
    const done = new Date();
    records.hostDone(activated("p3"), done);
    await recorded("p3", V2);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await recordResults(
      url,
      "ssh",
      [
        {
          host: "p3",
          desired: V3,
          seconds: 1,
          outcome: { status: "activated", generation: 6, previous: V2 },
        },
      ],
      { action: "switch", hosts: [{ host: "p3", current: V2, generation: 5 }] },
    );
    await records.finish([rolledBack("p3")], new Map([["p3", done]]));
    expect(await read("p3")).toMatchObject({ current: V3, generation: 6 });
  });
});
