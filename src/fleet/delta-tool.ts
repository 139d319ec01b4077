// Whether a host gets deltas, and which zstd it applies them with (docs/deltas.md, "On and
// off"): the fleet's named tool, else a zstd of the system the host runs, which it already has
// and already runs as root; or why it gets none. Pure.
import { parseDrvName } from "../nix/closure-diff.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";
import type { DeliveryMode, DeltaSettings } from "./fleet.js";

/** The oldest zstd with `--patch-from`, which applying a delta needs. */
export const ZSTD_PATCH_FROM: readonly number[] = [1, 4, 5];

/** Why a host with deltas on gets none; each is named in the plan (ui/plan-deltas-format.ts). */
export type NoDeltaReason =
  /** Its closure comes by a copy from the deployer (no substituter): whole. */
  | "copied"
  /** An agent host, and the fleet file does not turn deltas on: older agents refuse the tool. */
  | "agent"
  /** No tool named, and no zstd of 1.4.5 or newer in the system it runs. */
  | "no-zstd"
  /** The system it runs is in neither the cache nor the deployer's store: no base to compute from. */
  | "no-base";

/** A host's deltas before its running closure is looked at. */
export type DeltaSwitch =
  /** Turned off (the fleet file, the policy, `--no-delta`): nothing to say. */
  | { readonly kind: "off" }
  | { readonly kind: "none"; readonly reason: NoDeltaReason }
  /** On: with the fleet's tool, or (undefined) a zstd of the system it runs, if it has one. */
  | { readonly kind: "on"; readonly tool: StorePath | undefined };

/** The tool the fleet file names for every host, if any. */
export function namedDeltaTool(deltas: DeltaSettings | undefined): StorePath | undefined {
  return deltas?.on === true ? deltas.tool : undefined;
}

/**
 * Whether `host` may get deltas: the fleet file's `deltas` (absent: on, but for agent hosts,
 * whose older agents refuse a release naming a tool, so they wait for the file to say so), the
 * host's policy (with `--no-delta`), and whether it substitutes from the cache at all.
 */
export function deltaSwitch(input: {
  readonly deltas: DeltaSettings | undefined;
  /** The host's policy's `deltas`, `--no-delta` applied. */
  readonly policy: boolean;
  readonly delivery: DeliveryMode;
  /** Whether it fetches from the cache (a copy over ssh brings paths whole). */
  readonly fromCache: boolean;
}): DeltaSwitch {
  const { deltas } = input;
  if (deltas?.on === false || !input.policy) return { kind: "off" };
  if (!input.fromCache) return { kind: "none", reason: "copied" };
  if (deltas === undefined && input.delivery === "agent") return { kind: "none", reason: "agent" };
  return { kind: "on", tool: deltas?.tool };
}

/**
 * The zstd of a closure a host could apply deltas with: a path of package `zstd` of version
 * 1.4.5 or newer, its `bin` output first (nixpkgs' bin/zstd is there; a NixOS system has it,
 * `environment.systemPackages`' required packages), then the newest, then by store path.
 * The host checks that it holds an executable `bin/zstd` of that version before it runs it.
 */
export function closureZstd(closure: readonly StorePath[]): StorePath | undefined {
  const found = closure.flatMap((path) => {
    const drv = parseDrvName(parseStorePath(path).name);
    if (drv.name !== "zstd") return [];
    const match = /^(\d+)\.(\d+)\.(\d+)(-bin)?$/.exec(drv.version);
    if (match === null) return [];
    const version = [Number(match[1]), Number(match[2]), Number(match[3])];
    return atLeast(version, ZSTD_PATCH_FROM)
      ? [{ path, version, bin: match[4] !== undefined }]
      : [];
  });
  found.sort(
    (a, b) =>
      Number(b.bin) - Number(a.bin) ||
      compareVersions(b.version, a.version) ||
      (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
  return found[0]?.path;
}

function compareVersions(a: readonly number[], b: readonly number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function atLeast(version: readonly number[], least: readonly number[]): boolean {
  return compareVersions(version, least) >= 0;
}
