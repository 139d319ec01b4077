// A rollout's pause over a real directory store and the real recorder: the record says paused
// before the operator is told; `answerPause` (the rollout commands) writes the answer the
// waiting gate takes; the first answer counts; the deadline answers with the default; an
// interrupt ends the pause and is written down; a rollout that is not paused is refused.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OperationError } from "../errors.js";
import type { PlannedPause } from "../fleet/pause-policy.js";
import type { DeployPlan } from "../fleet/plan.js";
import { readAnswer, writeAnswer } from "../status/pause-answer-store.js";
import { listNewestRollouts, readRollout } from "../status/rollout-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { answerPause } from "./answer-pause.js";
import type { DeployEvent } from "./events.js";
import { pauseGate, waitAtPause } from "./rollout-pause.js";
import { RolloutRecorder } from "./rollout-recorder.js";

const V1 = "/nix/store/11111111111111111111111111111111-nixos-system-web-v1";

let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-pause-"));
  store = await openStore(`file://${dir}?fsync=false`);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const pause = (timeout = 600, onTimeout: "abort" | "resume" = "abort"): PlannedPause => ({
  afterWave: 1,
  kind: "canary",
  timeout,
  onTimeout,
});

/** A recorder with a two-wave plan under way, and a gate over it that shows into `shown`. */
function rollout(signal?: AbortSignal) {
  const recorder = new RolloutRecorder(store, { mode: "ssh", action: "switch" });
  const plan = {
    action: "switch",
    hosts: ["c1", "m1"].map((host) => ({ host, desired: V1, action: "activate" })),
    waves: [
      { wave: 1, kind: "canary", hosts: ["c1"] },
      { wave: 2, kind: "main", hosts: ["m1"] },
    ],
  } as unknown as DeployPlan;
  recorder.onEvent({ type: "plan", plan });
  const shown: DeployEvent[] = [];
  const input = {
    store,
    rollout: recorder.id,
    by: "deployer@ci",
    record: async (event: DeployEvent) => {
      recorder.onEvent(event);
      await recorder.written();
    },
    show: (event: DeployEvent) => shown.push(event),
    signal,
    pollMs: 20,
  };
  return { recorder, shown, input };
}

/** The record's "paused" event after the canary wave, from `since` until `until`. */
function pausedEvent(rollout: string, since: Date, until: Date): DeployEvent {
  return {
    type: "paused",
    rollout,
    afterWave: 1,
    kind: "canary",
    since: since.toISOString(),
    until: until.toISOString(),
    onTimeout: "abort",
    resume: "",
    abort: "",
    store: store.url,
  };
}

async function storedRecord() {
  const [newest] = await listNewestRollouts(store, 1);
  if (newest === undefined) throw new Error("no record");
  const record = await readRollout(store, newest.key);
  if (record === undefined) throw new Error("no record");
  return record;
}

describe("a pause", () => {
  it("is in the record before it is shown; resume by another writer lets it go on", async () => {
    const { recorder, shown, input } = rollout();
    const waiting = waitAtPause(input, pause());
    // The operator reads the record once the deploy says it waits.
    while (shown.length === 0) await new Promise((r) => setTimeout(r, 5));
    expect(shown[0]).toMatchObject({
      type: "paused",
      rollout: recorder.id,
      afterWave: 1,
      resume: `nixship rollout resume ${recorder.id}`,
      abort: `nixship rollout abort ${recorder.id}`,
    });
    expect(await storedRecord()).toMatchObject({ state: "paused", pauses: [{ afterWave: 1 }] });
    const answered = await answerPause(store, {
      rollout: recorder.id,
      action: "resume",
      by: "ops@laptop",
      waitMs: 10_000,
    });
    expect(answered).toMatchObject({ taken: true, answer: { action: "resume", by: "ops@laptop" } });
    expect(await waiting).toMatchObject({ action: "resume", by: "ops@laptop" });
    expect(shown.map((e) => e.type)).toEqual(["paused", "pause-ended"]);
    expect(await storedRecord()).toMatchObject({
      state: "running",
      pauses: [{ answer: { action: "resume", by: "ops@laptop" } }],
    });
  });

  it("takes the first answer: a second is refused, naming the first", async () => {
    const { recorder, shown, input } = rollout();
    const gate = pauseGate(input);
    const verdict = gate.wait(pause());
    while (shown.length === 0) await new Promise((r) => setTimeout(r, 5));
    await writeAnswer(store, {
      rollout: recorder.id,
      afterWave: 1,
      action: "abort",
      by: "first@ops",
      at: new Date().toISOString(),
    });
    await expect(
      answerPause(store, { rollout: recorder.id, action: "resume", by: "second@ops" }),
    ).rejects.toThrow(/was answered already: abort by first@ops/);
    expect(await verdict).toEqual({
      go: false,
      reason: expect.stringMatching(
        /^aborted by first@ops at .*\('nixship rollout abort'\), while paused after wave 1$/,
      ),
    });
    expect(gate.aborted()).toMatchObject({ action: "abort", by: "first@ops" });
    await recorder.finish("aborted");
    expect(await storedRecord()).toMatchObject({
      state: "aborted",
      pauses: [{ answer: { action: "abort", by: "first@ops" } }],
    });
  });

  it("takes its default at the deadline, written as the answer in the deployer's name", async () => {
    for (const onTimeout of ["abort", "resume"] as const) {
      const { recorder, input } = rollout();
      const answer = await waitAtPause(input, pause(1, onTimeout));
      expect(answer).toMatchObject({ action: onTimeout, by: "deployer@ci", timedOut: true });
      expect(await readAnswer(store, recorder.id, 1)).toEqual(answer);
      // Too late for an operator: the deadline's answer came first.
      await expect(
        answerPause(store, { rollout: recorder.id, action: "resume", by: "ops@laptop" }),
      ).rejects.toThrow(/is not paused/);
    }
  });

  it("an answer interrupted before it is written writes none; a later one counts", async () => {
    const { recorder, shown, input } = rollout();
    const waiting = waitAtPause(input, pause());
    while (shown.length === 0) await new Promise((r) => setTimeout(r, 5));
    const cut = new AbortController();
    cut.abort("interrupted (SIGINT)");
    await expect(
      answerPause(store, {
        rollout: recorder.id,
        action: "abort",
        by: "ops@laptop",
        signal: cut.signal,
      }),
    ).rejects.toMatchObject({
      code: "interrupted",
      message: `rollout abort: interrupted (SIGINT); no answer was written`,
    });
    expect(await readAnswer(store, recorder.id, 1)).toBeUndefined();
    const answered = await answerPause(store, {
      rollout: recorder.id,
      action: "resume",
      by: "ops@laptop",
      waitMs: 10_000,
    });
    expect(answered).toMatchObject({ taken: true, answer: { action: "resume" } });
    expect(await waiting).toMatchObject({ action: "resume" });
  });

  it("ends at an interrupt, which is written down so that a later answer is refused", async () => {
    const controller = new AbortController();
    const { recorder, shown, input } = rollout(controller.signal);
    const gate = pauseGate(input);
    const verdict = gate.wait(pause());
    while (shown.length === 0) await new Promise((r) => setTimeout(r, 5));
    controller.abort("interrupted (SIGINT)");
    expect(await verdict).toEqual({
      go: false,
      reason: "interrupted (SIGINT) while paused after wave 1",
    });
    expect(gate.aborted()).toBeUndefined();
    expect(await readAnswer(store, recorder.id, 1)).toMatchObject({ action: "interrupted" });
    await recorder.finish("interrupted");
    await expect(
      answerPause(store, { rollout: recorder.id, action: "abort", by: "ops@laptop" }),
    ).rejects.toThrow(
      /rollout [0-9a-f]+ is not paused: it is interrupted; its pause after wave 1 ended: the deploy was interrupted/,
    );
  });
});

describe("answerPause", () => {
  it("refuses a rollout it cannot find, or one that is not paused, saying where it is", async () => {
    await expect(
      answerPause(store, { rollout: "0123456789ab", action: "resume", by: "ops" }),
    ).rejects.toThrow(/rollout resume: no rollout 0123456789ab in /);
    const { recorder } = rollout();
    recorder.onEvent({ type: "wave-start", wave: 1, kind: "canary", hosts: ["c1"] });
    await recorder.written();
    await expect(
      answerPause(store, { rollout: recorder.id, action: "abort", by: "ops" }),
    ).rejects.toThrow(`rollout abort: rollout ${recorder.id} is not paused: it is running`);
  });

  it("refuses a pause whose deadline passed long ago with nobody taking it: the deploy is gone", async () => {
    const { recorder, input } = rollout();
    const since = new Date("2026-01-01T00:00:00.000Z");
    await input.record(pausedEvent(recorder.id, since, new Date(since.getTime() + 60_000)));
    await expect(
      answerPause(store, {
        rollout: recorder.id,
        action: "resume",
        by: "ops",
        now: () => new Date("2026-01-01T01:00:00.000Z"),
      }),
    ).rejects.toThrow(
      /its deadline \(2026-01-01T00:01:00.000Z\) passed and its deployer took no outcome/,
    );
    // Nothing was written: nothing waits for it.
    expect(await readAnswer(store, recorder.id, 1)).toBeUndefined();
  });

  it("refuses a pause whose record went unwritten for 15 heartbeats before its deadline: the deploy is gone", async () => {
    const { recorder, input } = rollout();
    await input.record(pausedEvent(recorder.id, new Date(), new Date(Date.now() + 86_400_000)));
    const written = (await storedRecord()).updatedAt;
    await expect(
      answerPause(store, {
        rollout: recorder.id,
        action: "abort",
        by: "ops",
        now: () => new Date(Date.parse(written) + 20 * 60_000),
        waitMs: 50,
      }),
    ).rejects.toThrow(
      `rollout ${recorder.id} still says it is paused after wave 1, but its deployer has not written it since ${written}`,
    );
    expect(await readAnswer(store, recorder.id, 1)).toBeUndefined();
  });

  it("says when the deploy does not take the answer within its wait", async () => {
    const { recorder, input } = rollout();
    await input.record(pausedEvent(recorder.id, new Date(), new Date(Date.now() + 600_000)));
    const answered = await answerPause(store, {
      rollout: recorder.id,
      action: "abort",
      by: "ops",
      waitMs: 50,
    });
    expect(answered).toMatchObject({ taken: false, answer: { action: "abort" } });
    expect(await readAnswer(store, recorder.id, 1)).toMatchObject({ action: "abort", by: "ops" });
    // A second answer while the first may still be taken: the first counts.
    const second = (after: number) =>
      answerPause(store, {
        rollout: recorder.id,
        action: "resume",
        by: "later",
        now: () => new Date(Date.parse(answered.answer.at) + after),
        waitMs: 50,
      });
    await expect(second(60_000)).rejects.toThrow(
      `rollout resume: the pause of rollout ${recorder.id} after wave 1 was answered already: abort by ops at ${answered.answer.at}`,
    );
    // Untaken two minutes on: the deploy is gone, and the rollback that undoes it is named.
    const gone = await second(121_000).catch((err: unknown) => err as OperationError);
    expect(gone).toBeInstanceOf(OperationError);
    expect((gone as OperationError).exitCode).toBe(1);
    expect((gone as OperationError).message).toBe(
      `rollout resume: rollout ${recorder.id} still says it is paused after wave 1, but its pause was answered (abort by ops at ${answered.answer.at}) and its deployer has not taken the answer since (killed, or its machine stopped): the deploy is gone and nothing waits for an answer`,
    );
    expect((gone as OperationError).hint).toBe(
      `'nixship rollback --rollout ${recorder.id}' puts back what the hosts it changed ran before`,
    );
  });
});
