// A push from the build host: where nixship is installed there, it stores the NARs
// of the closure it built straight into the cache (`push --nars-only`, with its own
// credentials), and the deployer checks its report against the host's Nix, signs the narinfos
// with its own key and commits them. The closure never enters the deployer's store; the key
// never leaves it. Without a nixship there (or one too old), the closure is copied back.

import { type CommitSummary, commitReportedNars } from "../cache/commit-narinfos.js";
import { checkClosureDefined, type DerivationClosure } from "../cache/derivation-closure.js";
import { queryClosure } from "../cache/local-nix.js";
import { parseNarReport } from "../cache/nar-report.js";
import { runOverSsh, type SshTarget } from "../delivery/ssh-transport.js";
import { OperationError } from "../errors.js";
import type { Fleet } from "../fleet/fleet.js";
import { fixedHost } from "../fleet/health-url.js";
import type { PathInfo } from "../nix/closure.js";
import type { SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { parseStoreUrl } from "../store/url.js";
import { eitherSignal, startDeadline } from "../util/deadline.js";
import { isLoopback } from "../util/listen-address.js";
import { shellQuote } from "../util/shell-quote.js";
import { withoutControls } from "../util/text.js";

/** Where a system installs nixship, looked at before the login's PATH. */
export const SYSTEM_NIXSHIP = "/run/current-system/sw/bin/nixship";
/** Seconds the probe may take (two starts of nixship there, and the connection). */
const PROBE_DEADLINE_S = 60;
/** Seconds the push there may take: a whole closure's upload, from a slow link. */
const PUSH_DEADLINE_S = 4 * 3600;
/** The largest report read: about 600 bytes a path, for closures far larger than a system's. */
const REPORT_LIMIT = 64 << 20;

/** Whether the build host can push: its nixship, or why the closure comes back instead. */
export type BuildHostPusher =
  | { readonly kind: "nixship"; readonly command: string; readonly version: string }
  | { readonly kind: "copy-back"; readonly why: string };

/**
 * Whether the build host pushes the closures (its nixship, found by `probeBuildHost`) or they
 * are copied back here, and why: it can only where the cache is an object store it reaches by
 * the same URL (S3; a directory is the deployer's), and only for hosts that substitute from
 * the cache (without a substituter, the deployer copies the closures to them itself).
 */
export async function choosePusher(
  target: SshTarget,
  cache: NonNullable<Fleet["cache"]>,
  served: boolean,
): Promise<BuildHostPusher> {
  if (!cache.url.startsWith("s3://")) {
    return {
      kind: "copy-back",
      why: `the cache ${cache.url} is not an object store ${target.name} can write`,
    };
  }
  if (!served && cache.substituter === undefined) {
    return {
      kind: "copy-back",
      why: "the hosts have no substituter: the deployer copies the closures to them",
    };
  }
  // An endpoint on this machine's loopback (a MinIO beside the deployer) is the build host's
  // own loopback there: it would write to whatever listens on it, or to nothing.
  const url = parseStoreUrl(cache.url);
  const endpoint = url.kind === "s3" ? url.endpoint : undefined;
  if (endpoint !== undefined && isLoopback(fixedHost(endpoint) ?? "")) {
    return {
      kind: "copy-back",
      why: `the cache's endpoint ${endpoint} is this machine's loopback, which ${target.name} cannot reach`,
    };
  }
  return probeBuildHost(target);
}

/**
 * Looks for nixship on the build host (the system's, then the login's PATH), asks its version,
 * and whether its push knows --nars-only. Any failure means copy back, with the reason: a
 * nixship that fails to answer is named as crashing, with the last line of its stderr.
 */
export async function probeBuildHost(target: SshTarget): Promise<BuildHostPusher> {
  // Each answer's own exit status (not a pipe's last command's), its stderr kept in a file.
  const script = [
    "e=$(mktemp) || exit 1",
    "trap 'rm -f \"$e\"' EXIT",
    'crashed() { echo "crashed $n $1 $(tail -n 1 "$e" | tr -d \'\\r\')"; exit 0; }',
    `for n in ${SYSTEM_NIXSHIP} "$(command -v nixship 2>/dev/null)"; do`,
    '  [ -n "$n" ] && [ -x "$n" ] || continue',
    '  v=$("$n" version 2>"$e") || crashed $?',
    "  v=$(printf '%s\\n' \"$v\" | head -n 1)",
    '  h=$("$n" push --help 2>"$e") || crashed $?',
    '  if printf \'%s\\n\' "$h" | grep -q -e --nars-only; then echo "found $n $v"; else echo "old $n $v"; fi',
    "  exit 0",
    "done",
    "echo absent",
  ].join("\n");
  const r = await runOverSsh(target, script, {
    fresh: true,
    signal: AbortSignal.timeout(PROBE_DEADLINE_S * 1000),
    stdoutKept: 4096,
  });
  const line = withoutControls(r.stdout.trim().split("\n")[0] ?? "").slice(0, 300);
  if (r.code !== 0) {
    return {
      kind: "copy-back",
      why: `nixship could not be looked for on ${target.name} (${lastWords(r.stderr) || `exit ${r.code}`})`,
    };
  }
  const [word, command, version, ...said] = line.split(" ");
  if (word === "crashed" && command) {
    const last = said.join(" ").trim();
    return {
      kind: "copy-back",
      why: `nixship on ${target.name} (${command}) crashed (exit ${version ?? "?"})${last ? `: ${last}` : ""}`,
    };
  }
  if (word === "found" && command && version && /^\d+\.\d+\.\d+/.test(version)) {
    return { kind: "nixship", command, version };
  }
  if (word === "old" && command) {
    return {
      kind: "copy-back",
      why: `nixship on ${target.name} (${command}${version ? ` ${version}` : ""}) is too old to push NARs only`,
    };
  }
  if (word === "found" && command) {
    return { kind: "copy-back", why: `nixship on ${target.name} (${command}) gave no version` };
  }
  return { kind: "copy-back", why: `nixship is not installed on ${target.name}` };
}

export interface BuildHostPushInput {
  readonly target: SshTarget;
  readonly nixship: string;
  /** The build host's store (`ssh-ng://…`), whose Nix the report is checked against. */
  readonly hostStore: string;
  /** NIX_SSHOPTS for Nix's ssh to it (build-place.ts). */
  readonly sshOpts: string | undefined;
  readonly cacheUrl: string;
  readonly store: ObjectStore;
  readonly key: SecretKey;
  readonly roots: readonly StorePath[];
  /** What the derivations built there make: the closure may hold nothing else. */
  readonly made: DerivationClosure;
  readonly signal?: AbortSignal;
}

/** What a build host's push committed, and its closure as the build host's Nix has it. */
export interface BuildHostPushSummary extends CommitSummary {
  readonly closure: readonly PathInfo[];
}

/**
 * Reads the closure as the build host's Nix records it, refused if it holds a path the
 * derivations do not make; then runs `nixship push --nars-only` there over ssh, reads its
 * report (bounded, strictly), checks it against that closure and the cache, then signs and
 * commits it.
 */
export async function pushFromBuildHost(input: BuildHostPushInput): Promise<BuildHostPushSummary> {
  const { target } = input;
  const closure = await queryClosure(input.roots, {
    store: input.hostStore,
    ...(input.sshOpts === undefined ? {} : { sshOpts: input.sshOpts }),
  });
  checkClosureDefined(closure, input.made, target.name);
  const command = [
    shellQuote(input.nixship),
    "push",
    "--nars-only",
    "--json",
    "--to",
    shellQuote(input.cacheUrl),
    ...input.roots.map(shellQuote),
  ].join(" ");
  const deadline = startDeadline(PUSH_DEADLINE_S * 1000);
  const r = await runOverSsh(target, command, {
    fresh: true,
    signal: eitherSignal(deadline, input.signal),
    stdoutKept: REPORT_LIMIT,
    // More than a report can be is no report: stopped at once, not streamed for hours.
    stdoutLimit: REPORT_LIMIT,
  }).finally(deadline.clear);
  if ((r.stdoutBytes ?? 0) > REPORT_LIMIT) {
    throw new OperationError(
      "build-host-bad-report",
      `${target.name} answered push --nars-only with more than ${REPORT_LIMIT} bytes`,
      { hint: `check the nixship on ${target.name}` },
    );
  }
  if (r.code !== 0) {
    throw new OperationError(
      "build-host-push-failed",
      `the push from ${target.name} failed${deadline.signal.aborted ? ` (stopped after ${PUSH_DEADLINE_S} s)` : ""}: ${lastWords(r.stderr) || `exit ${r.code}`}`,
      {
        hint: `check that ${target.name} can write the cache ${input.cacheUrl} with its own credentials (S3: its environment or instance role)`,
      },
    );
  }
  const report = parseNarReport(r.stdout, target.name);
  const committed = await commitReportedNars({
    store: input.store,
    key: input.key,
    source: target.name,
    report,
    closure,
  });
  return { ...committed, closure };
}

/** The last lines of a command's stderr, for a message. */
function lastWords(stderr: string): string {
  return withoutControls(stderr.trim().split("\n").slice(-4).join(" ")).slice(0, 600);
}
