// The agent's state file as loadState reads it: every field checked for its type, so that a
// state written by hand or damaged stops the agent with the file and the field named (and the
// hint to move it away), not one that refuses every later release as a replay.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { statusRecord } from "../status/status.js";
import { EMPTY_STATE, loadState, STATE_LIMIT, saveState } from "./state.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-agent-state-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

async function refusal(text: string): Promise<InputError> {
  await writeFile(join(dir, "state.json"), text);
  const err = await loadState(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  expect((err as InputError).code).toBe("bad-agent-state");
  expect((err as InputError).hint).toContain("move the file away to start afresh");
  return err as InputError;
}

describe("the agent's state file", () => {
  it("reads back what the agent saved, and none as the empty state", async () => {
    expect(await loadState(dir)).toEqual(EMPTY_STATE);
    const state = {
      ...EMPTY_STATE,
      etag: '"e1"',
      lastSeq: 7,
      lastDigest: "sha256-x",
      lastResult: "success" as const,
      applying: { seq: 8, digest: "sha256-y", path: "/nix/store/p", startedAt: "T" },
      interrupted: { seq: 8, digest: "sha256-y", path: "/nix/store/p" },
      rebootingBack: { bootId: "b1", since: "T", timeout: 600 },
    };
    await saveState(dir, state);
    expect(await loadState(dir)).toEqual(state);
  });

  it("refuses a field of the wrong type, naming it", async () => {
    const state = (extra: Record<string, unknown>) => JSON.stringify({ version: 1, ...extra });
    expect((await refusal(state({ lastSeq: "abc" }))).message).toBe(
      `${join(dir, "state.json")}: "lastSeq" must be a whole number or null`,
    );
    expect((await refusal(state({ lastSeq: -1 }))).message).toContain(`"lastSeq" must be`);
    expect((await refusal(state({ lastResult: 7 }))).message).toContain(
      `"lastResult" must be one of success, failed, no-entry or null`,
    );
    expect((await refusal(state({ etag: 3 }))).message).toContain(`"etag" must be a string`);
    expect((await refusal(state({ applying: 5 }))).message).toContain(
      `"applying" must be an activation (seq, digest, path, startedAt) or null`,
    );
    expect((await refusal(state({ interrupted: { seq: "3" } }))).message).toContain(
      `"interrupted" must be an interrupted activation (seq, digest, path) or null`,
    );
    expect((await refusal(state({ refused: { seq: 1 } }))).message).toContain(
      `"refused" must be a refusal (seq, reason, at) or null`,
    );
    expect(
      (await refusal(state({ rebootingBack: { bootId: "b1", since: "T", timeout: -1 } }))).message,
    ).toContain(`"rebootingBack" must be a reboot back (bootId, since, timeout) or null`);
    expect((await refusal(state({ unreported: "x" }))).message).toContain(
      `"unreported" is not a status record`,
    );
    expect((await refusal("[1]")).message).toContain("not an agent state of version 1");
  });

  it("heals a record whose error an older agent kept whole (a refusal quoting a planted document): clipped, it starts", async () => {
    const record = {
      ...statusRecord({
        host: "web1",
        mode: "agent",
        release: { channel: "prod", seq: 2 },
        desired: null,
        system: undefined,
        what: { state: "rejected", phase: "verify", error: "x", rolledBack: null },
        startedAt: "2026-11-21T10:00:00.000Z",
        updatedAt: "2026-11-21T10:00:00.000Z",
      }),
      error: `release refused: ${"k".repeat(10_000)}`,
    };
    await writeFile(
      join(dir, "state.json"),
      JSON.stringify({ ...EMPTY_STATE, reported: record, beforeRefusal: record }),
    );
    const state = await loadState(dir);
    expect(state.reported?.error).toHaveLength(8192);
    expect(state.reported?.error?.endsWith("k…")).toBe(true);
    expect(state.beforeRefusal?.error).toHaveLength(8192);
  });

  it(`refuses a file larger than ${STATE_LIMIT} bytes before reading it whole`, async () => {
    const big = `{"version":1,"etag":"${"x".repeat(STATE_LIMIT)}"}`;
    expect((await refusal(big)).message).toContain(
      `larger than the ${STATE_LIMIT} an agent writes`,
    );
  });
});
