// Which rollout a rollback without --rollout undoes, over a real directory store: one a
// rollback sent back for every host is passed over, and one a rollback did not finish
// (interrupted: a host failed before it started, one never reached) is undone again, for the
// hosts it still stands for.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError, OperationError } from "../errors.js";
import type { Fleet } from "../fleet/fleet.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import { writeAnswer } from "../status/pause-answer-store.js";
import { type RolloutHost, type RolloutRecord, rolloutKey } from "../status/rollout.js";
import {
  ASK_BYTES,
  ASK_LOOKBACK,
  listNewestRollouts,
  writeRollout,
} from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { readUndo } from "./rollout-undo.js";

const V0 = "/nix/store/00000000000000000000000000000000-web-v0";
const V1 = "/nix/store/11111111111111111111111111111111-web-v1";
const V2 = "/nix/store/22222222222222222222222222222222-web-v2";
const HOUR = 3_600_000;

let dir: string;
let store: ObjectStore;
let key: SecretKey;
let fleet: Fleet;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-rollout-undo-"));
  store = await openStore(`file://${dir}?fsync=false`);
  key = generateSecretKey("undo-1");
  // Agent hosts: what each runs is read from the store (none here), never asked of a host
  // over the network.
  fleet = parseFleetValue(
    {
      cache: { url: `file://${dir}`, publicKeys: [formatPublicKey(publicKeyOf(key))] },
      releases: { channel: "prod", publicKeys: [formatPublicKey(publicKeyOf(key))] },
      hosts: Object.fromEntries(["a", "b", "c"].map((h) => [h, { delivery: "agent", system: V2 }])),
    },
    "rollout-undo.test.ts",
  );
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const host = (name: string, state: RolloutHost["state"], system: string, before: string) =>
  ({ host: name, state, phase: null, system, before, message: null }) as RolloutHost;

function rollout(id: string, ago: number, hosts: RolloutHost[], undoes?: string): RolloutRecord {
  const at = new Date(Date.now() - ago).toISOString();
  return {
    version: 1,
    id,
    mode: "ssh",
    action: "switch",
    state: hosts.every((h) => h.state === "confirmed") ? "succeeded" : "partial",
    stopped: null,
    waves: [{ index: 1, kind: "main", hosts }],
    skipped: [],
    startedAt: at,
    updatedAt: at,
    ...(undoes === undefined ? {} : { undoes }),
  };
}

/** W gave every host V1 (from V0), then X gave them V2 (from V1). */
async function twoRollouts(): Promise<void> {
  const all = (system: string, before: string) =>
    ["a", "b", "c"].map((h) => host(h, "confirmed", system, before));
  await writeRollout(store, rollout("aaaaaaaaaaaa", 3 * HOUR, all(V1, V0)), key);
  await writeRollout(store, rollout("bbbbbbbbbbbb", 2 * HOUR, all(V2, V1)), key);
}

describe("a rollback without --rollout", () => {
  it("names a newer record no cache key signed, and the signed rollout it would undo in its place", async () => {
    await twoRollouts();
    const all = ["a", "b", "c"].map((h) => host(h, "confirmed", V0, V2));
    await writeRollout(store, rollout("cccccccccccc", HOUR, all));
    const refused = await readUndo(fleet, {}).then(
      () => undefined,
      (err: unknown) => err as InputError,
    );
    expect(refused).toBeInstanceOf(InputError);
    expect(refused?.message).toMatch(
      /^rollout cccccccccccc's record \(.*\) is not to be believed: it is not signed/,
    );
    expect(refused?.hint).toMatch(
      /^the newest rollout a cache key signed that names these hosts is bbbbbbbbbbbb \(started [^)]*\): 'nixship rollback --rollout bbbbbbbbbbbb' undoes it\. a deploy signs its record/,
    );
    // Given by id, it is read with the unsigned record among those started since.
    expect((await readUndo(fleet, { id: "bbbbbbbbbbbb" })).record.id).toBe("bbbbbbbbbbbb");
  });

  it("names a newer record that cannot be read, and the signed rollout it would undo in its place, where it stopped at it", async () => {
    await twoRollouts();
    const garbage = rolloutKey(new Date(Date.now() - 60_000), "cccccccccccc");
    await store.put(garbage, Buffer.from("not a record"));
    const refused = await readUndo(fleet, {}).then(
      () => undefined,
      (err: unknown) => err as InputError,
    );
    expect(refused).toMatchObject({
      code: "rollout-unreadable",
      message: expect.stringContaining(
        `the rollout record file://${dir} ${garbage} cannot be read (`,
      ),
      hint: expect.stringMatching(
        /^the newest rollout a cache key signed that names these hosts is bbbbbbbbbbbb .*'nixship rollback --rollout bbbbbbbbbbbb' undoes it\. remove it if no deploy of yours wrote it$/,
      ),
    });
  });

  it("reads no more than ASK_BYTES of the newer records that name no selected host (the newest always)", async () => {
    await twoRollouts();
    // Rollouts of 40,000 hosts the fleet file does not have, newer than X: a record near
    // ROLLOUT_RECORD_LIMIT each, and more of them than the budget holds.
    const others = Array.from({ length: 40_000 }, (_, i) => host(`o${i}`, "confirmed", V2, V1));
    const count = Math.ceil(ASK_BYTES / (8 * 1024 * 1024)) + 1;
    for (let i = 0; i < count; i++) {
      await writeRollout(
        store,
        rollout(`c${i.toString(16).padStart(11, "0")}`, HOUR - i, others),
        key,
      );
    }
    const listed = await listNewestRollouts(store, ASK_LOOKBACK);
    expect(listed.slice(0, count).every((o) => o.size > 7 * 1024 * 1024)).toBe(true);
    await expect(readUndo(fleet, {})).rejects.toThrow(
      new RegExp(
        `^rollback: none of the newest ${count - 1} rollouts in file://.* \\(64 MiB of records, all a rollback reads\\) names a selected host$`,
      ),
    );
    // Given by id, it is found all the same.
    expect((await readUndo(fleet, { id: "bbbbbbbbbbbb" })).record.id).toBe("bbbbbbbbbbbb");
  }, 60_000);

  it("passes over a rollout a rollback sent back for every host, to the one before", async () => {
    await twoRollouts();
    const back = ["a", "b", "c"].map((h) => host(h, "confirmed", V1, V2));
    await writeRollout(store, rollout("cccccccccccc", HOUR, back, "bbbbbbbbbbbb"), key);
    expect((await readUndo(fleet, {})).record.id).toBe("aaaaaaaaaaaa");
  });

  it("passes over a dry run to the rollout before it, and refuses to undo a dry run by id", async () => {
    await twoRollouts();
    const dry = {
      ...rollout(
        "dddddddddddd",
        HOUR,
        ["a", "b"].map((h) => host(h, "confirmed", V0, V2)),
      ),
      action: "dry-activate" as const,
    };
    await writeRollout(store, dry, key);
    const read = await readUndo(fleet, {});
    expect(read.record.id).toBe("bbbbbbbbbbbb");
    await expect(readUndo(fleet, { id: "dddddddddddd" })).rejects.toThrow(
      "rollout dddddddddddd was a dry run (--action dry-activate): it changed no host, so there is nothing to undo",
    );
  });

  it("finishes a rollback that was interrupted: the rollout it undid still stands for the hosts it did not send back", async () => {
    await twoRollouts();
    const interrupted = [
      host("a", "confirmed", V1, V2),
      { ...host("b", "failed", V1, V2), phase: "connect", message: "interrupted (SIGINT)" },
      host("c", "not-started", V1, V2),
    ] as RolloutHost[];
    await writeRollout(store, rollout("cccccccccccc", HOUR, interrupted, "bbbbbbbbbbbb"), key);
    const read = await readUndo(fleet, {});
    expect(read.record.id).toBe("bbbbbbbbbbbb");
  });
});

describe("a rollback of a rollout whose hosts left the fleet file", () => {
  it("names each host the fleet file has no more, and those of them the rollout changed", async () => {
    const hosts = [
      host("a", "confirmed", V2, V1),
      host("d", "confirmed", V2, V1),
      { ...host("e", "failed", V2, V1), phase: "connect" },
    ] as RolloutHost[];
    await writeRollout(store, rollout("dddddddddddd", HOUR, hosts), key);
    const read = await readUndo(fleet, { id: "dddddddddddd" });
    expect(read.gone).toEqual(["d", "e"]);
    // e failed before anything changed: only d is left as the rollout left it.
    expect(read.goneChanged).toEqual(["d"]);
    expect(read.steps.map((s) => s.host)).toEqual(["a"]);
    // With --on, only hosts of the fleet file are selected: none is gone.
    const on = fleet.hosts.filter((h) => h.name === "a");
    expect((await readUndo(fleet, { id: "dddddddddddd", selected: on })).gone).toEqual([]);
  });
});

describe("a rollback of a paused rollout", () => {
  it("waits while an answer may still be taken, and undoes it once its deploy left the answer untaken", async () => {
    await twoRollouts();
    const since = new Date(Date.now() - 60_000).toISOString();
    const paused: RolloutRecord = {
      ...rollout("cccccccccccc", 60_000, [host("a", "confirmed", V0, V2)]),
      state: "paused",
      waves: [
        { index: 1, kind: "canary", hosts: [host("a", "confirmed", V0, V2)] },
        { index: 2, kind: "main", hosts: [host("b", "pending", V0, V2)] },
      ],
      pauses: [
        {
          afterWave: 1,
          since,
          until: new Date(Date.now() + HOUR).toISOString(),
          onTimeout: "abort",
        },
      ],
    };
    await writeRollout(store, paused, key);
    // Unanswered: answer it.
    await expect(readUndo(fleet, {})).rejects.toThrow(
      "rollback: rollout cccccccccccc is paused, and its deploy waits for an answer",
    );
    const at = new Date().toISOString();
    await writeAnswer(store, {
      rollout: "cccccccccccc",
      afterWave: 1,
      action: "resume",
      by: "ops@x",
      at,
    });
    const waiting = await readUndo(fleet, {}).catch((err: unknown) => err as OperationError);
    expect(waiting).toBeInstanceOf(OperationError);
    expect((waiting as OperationError).exitCode).toBe(1);
    expect((waiting as OperationError).message).toMatch(
      `its pause was answered (resume by ops@x at ${at}), but its deploy has not taken the answer yet`,
    );
    expect((waiting as OperationError).hint).toContain(
      `one still untaken at ${new Date(Date.parse(at) + 120_000).toISOString()} is gone (killed)`,
    );
    const gone = await readUndo(fleet, { now: new Date(Date.parse(at) + 121_000) });
    expect(gone.record.id).toBe("cccccccccccc");
    expect(gone.abandoned).toMatch(/^its pause was answered \(resume by ops@x/);
  });
});

describe("a rollback of an ssm rollout", () => {
  it("judges its ssm hosts by what they answer, not by records a command that went on never updated", async () => {
    const ssmFleet = parseFleetValue(
      {
        cache: { url: `file://${dir}`, publicKeys: [formatPublicKey(publicKeyOf(key))] },
        ssm: { region: "us-east-1" },
        hosts: {
          s1: { delivery: "ssm", instanceId: "i-0123456789abcdef0", system: V2 },
          s2: { delivery: "ssm", instanceId: "i-0123456789abcdef1", system: V2 },
        },
      },
      "rollout-undo.test.ts",
    );
    // An interrupted rollout left s1 settling: its command went on and switched it to V2, and
    // no record says so. s2 it never reached.
    const interrupted = {
      ...rollout("eeeeeeeeeeee", HOUR, [
        { ...host("s1", "failed", V2, V1), phase: "switch", message: "still settling" },
        host("s2", "not-started", V2, V1),
      ] as RolloutHost[]),
      mode: "ssm" as const,
      state: "interrupted" as const,
    };
    await writeRollout(store, interrupted, key);
    // By the records alone (none): what s1 runs cannot be told.
    const unasked = await readUndo(ssmFleet, {});
    expect(unasked.steps.map((s) => [s.host, s.kind])).toEqual([
      ["s1", "stays"],
      ["s2", "stays"],
    ]);
    const asked: string[][] = [];
    const read = await readUndo(ssmFleet, {
      askLive: async (hosts) => {
        asked.push(hosts.map((h) => h.name));
        return new Map([
          ["s1", V2],
          ["s2", V1],
        ]);
      },
    });
    expect(asked).toEqual([["s1", "s2"]]);
    expect(read.steps.map((s) => [s.host, s.kind])).toEqual([
      ["s1", "back"],
      ["s2", "stays"],
    ]);
  });
});

describe("what a rollback believes of the rollouts started since", () => {
  /** web1 over ssm, which runs what `runs` says (asked live). */
  const ssmFleet = () =>
    parseFleetValue(
      {
        cache: { url: `file://${dir}`, publicKeys: [formatPublicKey(publicKeyOf(key))] },
        ssm: { region: "us-east-1" },
        hosts: { web1: { delivery: "ssm", instanceId: "i-0123456789abcdef0", system: V1 } },
      },
      "rollout-undo.test.ts",
    );
  const runsV1 = async () => new Map([["web1", V1]]);
  const one = (id: string, ago: number, state: RolloutHost["state"], to: string, from: string) =>
    rollout(id, ago, [host("web1", state, to, from)]);
  /** Signed: A gave web1 V1 (from V0), B moved it to V2, C (a revert deploy) gave it V1 again. */
  async function aThenBThenC(): Promise<void> {
    await writeRollout(store, one("aaaaaaaaaaaa", 3 * HOUR, "confirmed", V1, V0), key);
    await writeRollout(store, one("bbbbbbbbbbbb", 2 * HOUR, "confirmed", V2, V1), key);
    await writeRollout(store, one("cccccccccccc", HOUR, "confirmed", V1, V2), key);
  }
  const stepOf = async () =>
    (await readUndo(ssmFleet(), { id: "aaaaaaaaaaaa", askLive: runsV1 })).steps[0];

  it("a newer record that cannot be read refuses the host, named, as one that may have changed it", async () => {
    await writeRollout(store, one("aaaaaaaaaaaa", 3 * HOUR, "confirmed", V1, V0), key);
    const garbage = rolloutKey(new Date(Date.now() - HOUR), "cccccccccccc");
    await store.put(garbage, Buffer.from("not a record"));
    expect(await stepOf()).toMatchObject({
      kind: "refused",
      why: expect.stringContaining(
        `the rollout record ${garbage}, started since rollout aaaaaaaaaaaa, cannot be read (remove it if no deploy of yours wrote it)`,
      ),
    });
  });

  it("an unsigned record saying a later rollout was undone clears no refusal: the host stays, refused", async () => {
    await aThenBThenC();
    expect(await stepOf()).toMatchObject({
      kind: "refused",
      why: expect.stringMatching(/^rollout cccccccccccc \(.*\) changed it since/),
    });
    // Someone who can write the store but holds no key: two records claiming rollbacks of C and
    // B that left web1 alone (so that they change nothing themselves).
    const claim = (id: string, ago: number, undoes: string) =>
      rollout(id, ago, [host("web1", "left", V1, V1)], undoes);
    await writeRollout(store, claim("dddddddddddd", 30 * 60_000, "cccccccccccc"));
    await writeRollout(store, claim("eeeeeeeeeeee", 20 * 60_000, "bbbbbbbbbbbb"));
    expect(await stepOf()).toMatchObject({
      kind: "refused",
      why: expect.stringMatching(/^rollout cccccccccccc \(.*\) changed it since/),
    });
  });

  it("a later record put back at an earlier write (still running, the host pending) refuses the host, as one at work", async () => {
    await writeRollout(store, one("aaaaaaaaaaaa", 3 * HOUR, "confirmed", V1, V0), key);
    // B's and C's first writes, signed as every write is, put back over their last.
    const first = (id: string, ago: number, to: string, from: string) => ({
      ...one(id, ago, "pending", to, from),
      state: "running" as const,
    });
    await writeRollout(store, first("bbbbbbbbbbbb", 2 * HOUR, V2, V1), key);
    await writeRollout(store, first("cccccccccccc", HOUR, V1, V2), key);
    expect(await stepOf()).toMatchObject({
      kind: "refused",
      why: expect.stringMatching(
        /^rollout cccccccccccc \(.*\) names it and its record still says running: it may be at work on it/,
      ),
    });
  });

  it("without --rollout, an unsigned dry run that claims to undo a signed rollback clears no refusal", async () => {
    const fleet = parseFleetValue(
      {
        cache: { url: `file://${dir}`, publicKeys: [formatPublicKey(publicKeyOf(key))] },
        ssm: { region: "us-east-1" },
        hosts: Object.fromEntries(
          ["web1", "web2"].map((h, i) => [
            h,
            { delivery: "ssm", instanceId: `i-012345678${i}abcdef0`, system: V1 },
          ]),
        ),
      },
      "rollout-undo.test.ts",
    );
    const runs = async () =>
      new Map([
        ["web1", V1],
        ["web2", V1],
      ]);
    // A gave web1 and web2 V1; the signed rollback R of A sent web1 back to V0; web1 was put on
    // V1 again since, outside any rollout. A still stands for web2.
    await writeRollout(
      store,
      rollout("aaaaaaaaaaaa", 3 * HOUR, [
        host("web1", "confirmed", V1, V0),
        host("web2", "confirmed", V1, V0),
      ]),
      key,
    );
    await writeRollout(
      store,
      rollout("bbbbbbbbbbbb", 2 * HOUR, [host("web1", "confirmed", V0, V1)], "aaaaaaaaaaaa"),
      key,
    );
    const web1 = async () => {
      const read = await readUndo(fleet, { askLive: runs });
      expect(read.record.id).toBe("aaaaaaaaaaaa");
      return read.steps.find((s) => s.host === "web1");
    };
    const refused = {
      kind: "refused",
      why: expect.stringMatching(/^rollback bbbbbbbbbbbb of rollout aaaaaaaaaaaa sent it back/),
    };
    expect(await web1()).toMatchObject(refused);
    // Unsigned, and a dry run (passed over before any record is weighed): it claims R undone.
    await writeRollout(store, {
      ...rollout("cccccccccccc", HOUR, [host("web1", "confirmed", V1, V0)], "bbbbbbbbbbbb"),
      action: "dry-activate",
    });
    expect(await web1()).toMatchObject(refused);
  });
});
