// Status records for unit tests: one host's record with every field set, the systems named by
// V1, V2 and HAND (a system nixship never left there), and what a test changes laid over it.
import type { HostStatus } from "../../src/host/script-outcomes.js";
import type { StatusRecord } from "../../src/status/status.js";

export const V1 = "/nix/store/11111111111111111111111111111111-nixos-system-web1";
export const V2 = "/nix/store/22222222222222222222222222222222-nixos-system-web1";
export const HAND = "/nix/store/99999999999999999999999999999999-nixos-system-web1";

/** web1's record over ssh: success on V2, generation 7, V1 before it; `over` laid on top. */
export function sshRecord(over: Partial<StatusRecord> = {}): StatusRecord {
  return {
    version: 1,
    host: "web1",
    mode: "ssh",
    channel: null,
    seq: null,
    desired: V2,
    current: V2,
    generation: 7,
    previous: V1,
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    startedAt: "2026-11-25T10:00:00.000Z",
    updatedAt: "2026-11-25T10:00:05.000Z",
    ...over,
  };
}

/** An ssh host's live answer: it runs `current` (its profile too), generation 8; `over` on top. */
export function liveAnswer(current: string, over: Partial<HostStatus> = {}): HostStatus {
  return {
    reachable: true,
    current,
    profile: current,
    generation: 8,
    generations: [],
    pending: undefined,
    ...over,
  } as HostStatus;
}
