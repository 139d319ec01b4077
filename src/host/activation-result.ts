// activate.sh's JSON result checked field by field where it enters: a host (or whoever answers
// for it) is not trusted to send the shape the type promises. What is wrong is named, so a
// host that answers badly fails alone, with the reason, and no later code meets a number where
// it expects a string. Strings lose their control characters here, before any terminal sees
// them (a newline stays: messages may be multi-line; each renderer flattens what it must).
import { ACTIONS } from "../fleet/action.js";
import { isStorePath } from "../nix/store-path.js";
import { readRebootState } from "../status/boot.js";
import { type DeltaReport, readDeltaReport } from "../status/delta-report.js";
import { isEpochSeconds } from "../util/epoch.js";
import { withoutControls } from "../util/text.js";
import { type ActivationResult, SCRIPT_VERBS } from "./activation-answer.js";

/** The longest message or note taken from a host. */
const MAX_TEXT = 4096;
/** The most generations (or hashes) a list may hold. */
const MAX_LIST = 10_000;
/** A token's form: the one activate.sh's verbs and the SSM document accept. */
const TOKEN = /^[A-Za-z0-9_-]{1,64}$/;

type Obj = Record<string, unknown>;

class Bad extends Error {}

function field(o: Obj, key: string): unknown {
  return Object.hasOwn(o, key) ? o[key] : undefined;
}

function text(o: Obj, key: string, optional = false): string | undefined {
  const v = field(o, key);
  if (v === undefined && optional) return undefined;
  if (typeof v !== "string") throw new Bad(`${key} is not a string`);
  if (v.length > MAX_TEXT) throw new Bad(`${key} is longer than ${MAX_TEXT} characters`);
  return withoutControls(v);
}

function oneOf<T extends string>(o: Obj, key: string, allowed: readonly T[]): T {
  const v = field(o, key);
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
    throw new Bad(`${key} is not one of ${allowed.join(", ")}`);
  }
  return v as T;
}

function int(o: Obj, key: string, opts: { nullable?: boolean; optional?: boolean } = {}) {
  const v = field(o, key);
  if (v === undefined && opts.optional) return undefined;
  if (v === null && opts.nullable) return null;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
    throw new Bad(`${key} is not a whole number${opts.nullable ? " or null" : ""}`);
  }
  return v;
}

/** A time in seconds since the epoch (isEpochSeconds), or null where `nullable`. */
function time(o: Obj, key: string, opts: { nullable?: boolean; optional?: boolean } = {}) {
  const v = field(o, key);
  if (v === undefined && opts.optional) return undefined;
  if (v === null && opts.nullable) return null;
  if (!isEpochSeconds(v)) {
    throw new Bad(`${key} is not a time in seconds${opts.nullable ? " or null" : ""}`);
  }
  return v;
}

/** A token the deployer made (letters, digits, '-' and '_', as every verb and SSM take it). */
function token(o: Obj, key: string, optional = false): string | undefined {
  const v = text(o, key, optional);
  if (v === undefined) return undefined;
  if (!TOKEN.test(v)) throw new Bad(`${key} is not a token of letters, digits, '-' or '_'`);
  return v;
}

function num(o: Obj, key: string): number | null {
  const v = field(o, key);
  if (v === null) return null;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new Bad(`${key} is not a number or null`);
  }
  return v;
}

function bool(o: Obj, key: string): boolean {
  const v = field(o, key);
  if (typeof v !== "boolean") throw new Bad(`${key} is not true or false`);
  return v;
}

function storePath(o: Obj, key: string, opts: { nullable?: boolean; optional?: boolean } = {}) {
  const v = field(o, key);
  if (v === undefined && opts.optional) return undefined;
  if (v === null && opts.nullable) return null;
  if (typeof v !== "string" || !isStorePath(v)) {
    throw new Bad(`${key} is not a store path${opts.nullable ? " or null" : ""}`);
  }
  return v;
}

function list<T>(o: Obj, key: string, each: (item: unknown, at: string) => T, nullable = false) {
  const v = field(o, key);
  if (v === null && nullable) return null;
  if (!Array.isArray(v)) throw new Bad(`${key} is not a list`);
  if (v.length > MAX_LIST) throw new Bad(`${key} has more than ${MAX_LIST} entries`);
  return v.map((item, i) => each(item, `${key}[${i}]`));
}

function object(v: unknown, at: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Bad(`${at} is not an object`);
  return v as Obj;
}

/** Keeps only the keys that are present, so optional fields stay absent. */
function present<T extends Obj>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function deltaReport(v: unknown): DeltaReport {
  const report = readDeltaReport(v);
  if (typeof report === "string") throw new Bad(`delta: ${report}`);
  return report;
}

function generationEntry(item: unknown, at: string) {
  const o = object(item, at);
  const generation = int(o, "generation");
  const path = field(o, "path");
  if (typeof path !== "string" || !isStorePath(path))
    throw new Bad(`${at}.path is not a store path`);
  return { generation: generation as number, path };
}

function activation(o: Obj) {
  const v = field(o, "activation");
  if (v === undefined) return undefined;
  if (v === null) return null;
  const a = object(v, "activation");
  return {
    command: text(a, "command") as string,
    // What the lock file says the holder activates: shown, never used as a path.
    path: field(a, "path") === null ? null : (text(a, "path") as string),
    pid: int(a, "pid", { nullable: true }) as number | null,
    since: time(a, "since", { nullable: true }) as number | null,
    deadline: time(a, "deadline", { nullable: true }) as number | null,
    stale: bool(a, "stale"),
  };
}

/** What a reboot would load, as `status` reports it. */
function rebootState(o: Obj) {
  const v = field(o, "reboot");
  if (v === undefined) return undefined;
  if (v === null) return null;
  const read = readRebootState(v);
  if (typeof read === "string") throw new Bad(`reboot.${read}`);
  return read;
}

/** This boot, as `status` reports it. */
function bootState(o: Obj) {
  const v = field(o, "boot");
  if (v === undefined) return undefined;
  const b = object(v, "boot");
  const p = field(b, "pending");
  const pending =
    p === null
      ? null
      : (() => {
          const q = object(p, "boot.pending");
          const generation = int(q, "generation", { nullable: true, optional: true });
          const previous = storePath(q, "previous", { nullable: true, optional: true });
          const bootId = field(q, "bootId");
          return {
            token: token(q, "token") as string,
            path: storePath(q, "path", { nullable: true }) as string | null,
            since: time(q, "since", { nullable: true }) as number | null,
            // Absent from older scripts.
            ...(generation === undefined ? {} : { generation }),
            ...(previous === undefined ? {} : { previous }),
            ...(bootId === undefined ? {} : { bootId: bootId === null ? null : text(q, "bootId") }),
          };
        })();
  return {
    id: text(b, "id") as string,
    assessment: field(b, "assessment") === null ? null : (text(b, "assessment") as string),
    pending,
  };
}

/**
 * The trust a pinned script ran under, as `status` reports it: its keys' names and its
 * substituters; null: the caller's trust (a piped script); undefined from an older script.
 */
function pinnedTrust(o: Obj) {
  const v = field(o, "pinned");
  if (v === undefined || v === null) return v;
  const p = object(v, "pinned");
  const texts = (key: string) =>
    list(p, key, (item, at) => {
      if (typeof item !== "string" || item === "" || item.length > 1024) {
        throw new Bad(`pinned.${at} is not a short text`);
      }
      return withoutControls(item);
    }) as string[];
  return { keys: texts("keys"), substituters: texts("substituters") };
}

/** The failed system the host runs, as `status` reports it. */
function failedSystem(o: Obj) {
  const v = field(o, "failed");
  if (v === undefined) return undefined;
  if (v === null) return null;
  const f = object(v, "failed");
  return {
    path: storePath(f, "path") as string,
    since: time(f, "since", { nullable: true }) as number | null,
    reason: text(f, "reason") as string,
  };
}

const HASH_PART = /^[0-9abcdfghijklmnpqrsvwxyz]{32}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** activate.sh's CLOSURE_LIMIT. */
const MAX_CLOSURE = 700_000;

function checkVariant(o: Obj): ActivationResult {
  const ok = bool(o, "ok");
  const command = field(o, "command");
  const tookOver = text(o, "tookOver", true);
  const said = field(o, "result");
  if (!ok && (said === "usage" || said === "locked")) {
    // Refused before it ran: any command (or none, or one it did not know).
    return present({
      ok: false as const,
      command: command === undefined || command === null ? null : oneOf(o, "command", SCRIPT_VERBS),
      result: said as "usage" | "locked",
      exitCode: int(o, "exitCode") as number,
      message: text(o, "message") as string,
      since: time(o, "since", { nullable: true, optional: true }),
      deadline: time(o, "deadline", { nullable: true, optional: true }),
    });
  }
  switch (command) {
    case "activate":
      if (ok) {
        return present({
          ok,
          command,
          result: oneOf(o, "result", ["activated", "awaiting-confirmation", "rebooting"] as const),
          path: storePath(o, "path") as string,
          action: oneOf(o, "action", ACTIONS),
          previous: storePath(o, "previous", { nullable: true }) as string | null,
          previousGeneration: int(o, "previousGeneration", { nullable: true }) as number | null,
          generation: int(o, "generation", { nullable: true }) as number | null,
          token: token(o, "token", true),
          confirmTimeout: int(o, "confirmTimeout", { optional: true }) as number | undefined,
          bootId: text(o, "bootId", true),
          tookOver,
          delta: field(o, "delta") === undefined ? undefined : deltaReport(field(o, "delta")),
        });
      }
      return present({
        ok,
        command,
        result: oneOf(o, "result", ["failed", "timed-out", "interrupted", "changed"] as const),
        phase: oneOf(o, "phase", [
          "realise",
          "secrets",
          "profile",
          "switch",
          "reboot",
          "health",
        ] as const),
        exitCode: int(o, "exitCode") as number,
        message: text(o, "message") as string,
        path: text(o, "path", true),
        action: field(o, "action") === undefined ? undefined : oneOf(o, "action", ACTIONS),
        rolledBack: bool(o, "rolledBack"),
        previous: storePath(o, "previous", { nullable: true }) as string | null,
        previousGeneration: int(o, "previousGeneration", { nullable: true, optional: true }),
        generation: int(o, "generation", { nullable: true }) as number | null,
        tookOver,
      });
    case "confirm":
    case "abort": {
      // abort: the phase of the activation it stopped (absent: none was under way).
      const stoppedIn = text(o, "stoppedIn", true);
      return {
        ok,
        command,
        result: oneOf(o, "result", [
          "confirmed",
          "rolled-back",
          "rollback-failed",
          "activated",
          "unknown",
          "unknown-token",
        ] as const),
        exitCode: int(o, "exitCode") as number,
        message: text(o, "message") as string,
        // (unknown-token answers without them)
        generation: int(o, "generation", { nullable: true, optional: true }) ?? null,
        current: (storePath(o, "current", { nullable: true, optional: true }) ?? null) as
          | string
          | null,
        ...(stoppedIn === undefined ? {} : { stoppedIn }),
        ...(tookOver === undefined ? {} : { tookOver }),
      };
    }
    case "after-boot":
    case "confirm-boot":
    case "abort-boot":
      return present({
        ok,
        command,
        result: oneOf(o, "result", [
          "booted",
          "confirmed",
          "rolled-back",
          "rollback-failed",
          "unknown-token",
          "not-rebooted",
        ] as const),
        exitCode: int(o, "exitCode", { optional: true }) as number | undefined,
        message: text(o, "message", true),
        phase:
          field(o, "phase") === undefined
            ? undefined
            : oneOf(o, "phase", ["reboot", "health", "confirm"] as const),
        rolledBack: field(o, "rolledBack") === undefined ? undefined : bool(o, "rolledBack"),
        rebooting: field(o, "rebooting") === undefined ? undefined : bool(o, "rebooting"),
        assessment:
          field(o, "assessment") === undefined || field(o, "assessment") === null
            ? (field(o, "assessment") as null | undefined)
            : text(o, "assessment"),
        booted: storePath(o, "booted", { nullable: true, optional: true }),
        bootId: text(o, "bootId", true),
        generation: int(o, "generation", { nullable: true, optional: true }) as
          | number
          | null
          | undefined,
      });
    case "rollback":
      return present({
        ok,
        command,
        result: oneOf(o, "result", ["rolled-back", "failed", "no-generation"] as const),
        exitCode: int(o, "exitCode", { optional: true }) as number | undefined,
        generation: int(o, "generation", { nullable: true }) as number | null,
        from: int(o, "from", { nullable: true, optional: true }),
        path: storePath(o, "path", { optional: true }) as string | undefined,
        message: text(o, "message", true),
        tookOver,
      });
    case "prune":
      if (ok) {
        return present({
          ok,
          command,
          result: oneOf(o, "result", ["pruned"] as const),
          kept: list(o, "kept", (n, at) => int({ [at]: n }, at) as number) as number[],
          removed: list(o, "removed", (n, at) => int({ [at]: n }, at) as number) as number[],
          gc: oneOf(o, "gc", ["done", "timed-out", "failed"] as const),
          deletedPaths: int(o, "deletedPaths", { nullable: true }) as number | null,
          freedMiB: num(o, "freedMiB"),
          generation: int(o, "generation", { nullable: true }) as number | null,
          tookOver,
        });
      }
      return present({
        ok,
        command,
        result: oneOf(o, "result", ["failed", "interrupted"] as const),
        exitCode: int(o, "exitCode") as number,
        message: text(o, "message") as string,
        generation: int(o, "generation", { nullable: true, optional: true }),
      });
    case "status": {
      if (!ok) throw new Bad("a status result with ok false");
      const missing = field(o, "missing");
      const secrets = field(o, "secrets");
      if (secrets !== undefined && (typeof secrets !== "string" || !SHA256_HEX.test(secrets))) {
        throw new Bad("secrets is not a sha256 in hex");
      }
      return present({
        ok,
        command,
        current: storePath(o, "current", { nullable: true }) as string | null,
        booted: storePath(o, "booted", { nullable: true }) as string | null,
        profile: storePath(o, "profile", { nullable: true }) as string | null,
        generation: int(o, "generation", { nullable: true }) as number | null,
        generations: list(o, "generations", generationEntry) as {
          generation: number;
          path: string;
        }[],
        pending: field(o, "pending") === null ? null : (text(o, "pending") as string),
        activation: activation(o),
        failed: failedSystem(o),
        reboot: rebootState(o),
        boot: bootState(o),
        missing:
          missing === undefined
            ? undefined
            : (list(
                o,
                "missing",
                (h, at) => {
                  if (typeof h !== "string" || !HASH_PART.test(h)) {
                    throw new Bad(`${at} is not a store path's hash part`);
                  }
                  return h;
                },
                true,
              ) as string[] | null),
        secrets: secrets as string | undefined,
        pinned: pinnedTrust(o),
        pinnedActivator:
          field(o, "pinnedActivator") === undefined ? undefined : bool(o, "pinnedActivator"),
      });
    }
    case "check":
      return present({
        ok,
        command,
        result: oneOf(o, "result", ["passed", "failed"] as const),
        exitCode: int(o, "exitCode", { optional: true }) as number | undefined,
        message: text(o, "message", true),
        check:
          field(o, "check") === undefined || field(o, "check") === null
            ? (field(o, "check") as null | undefined)
            : text(o, "check"),
        current: storePath(o, "current", { nullable: true }) as string | null,
      });
    case "closure": {
      if (!ok) {
        return present({
          ok,
          command,
          result: oneOf(o, "result", ["absent", "too-large", "failed"] as const),
          exitCode: int(o, "exitCode") as number,
          message: text(o, "message") as string,
        });
      }
      const closure = field(o, "closure");
      if (typeof closure !== "string" || closure.length > MAX_CLOSURE || !BASE64.test(closure)) {
        throw new Bad(`closure is not base64 of at most ${MAX_CLOSURE} characters`);
      }
      return present({ ok, command, path: storePath(o, "path") as string, closure });
    }
    default:
      throw new Bad(`command is not one activate.sh answers with`);
  }
}

/** The result checked into its type, or what is wrong with it. */
export function checkActivationResult(value: unknown): ActivationResult | { problem: string } {
  try {
    return checkVariant(object(value, "the result"));
  } catch (err) {
    if (err instanceof Bad) return { problem: err.message };
    throw err;
  }
}
