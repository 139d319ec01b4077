// The example systems of examples/ (stand-ins for NixOS toplevels) built by the real Nix, and
// throwaway hosts to activate them in: a private /run, network and pid namespace each, so a
// service a switch starts can never outlive the host or reach past it.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { type CliRun, run, runOk } from "../../support/cli.js";

export const EXAMPLES_DIR = fileURLToPath(new URL("../../examples", import.meta.url));

export const EXAMPLE_SYSTEMS = [
  "web-v1",
  "web-v2",
  "web-v3",
  "web-pruned",
  "web-pruned-agent",
  "web-pruned-current",
  "web-v4",
  "web-broken",
  "web-failing",
  "web-hang",
  "web-checked",
  "web-noboot",
  "web-v4-broken",
  "web-errors-later",
  "web-errors-10",
  "web-errors-30",
  "web-errors-12",
] as const;
export type ExampleSystem = (typeof EXAMPLE_SYSTEMS)[number];

/**
 * Two more systems, alike but for one package's version (hello 2.12, 2.12.1), for the plan's
 * closure diff. Not built with the others: test/plan-diff.test.ts removes web-hello's own paths
 * from the deployer's store, to have its closure read from the cache.
 */
export const DIFF_EXAMPLE_SYSTEMS = ["web-hello", "web-hello-next"] as const;

/**
 * One rebuild, for deltas (docs/deltas.md, "Try it on the lab"): every store path new, the same
 * names, a zstd in sw/bin. Not built with the others (their libraries and zstd are larger).
 */
export const DELTA_EXAMPLE_SYSTEMS = ["web-deltas-v1", "web-deltas-v2"] as const;

/** Builds all example systems in one `nix build`; returns each one's toplevel store path. */
export async function buildExampleSystems(): Promise<Record<ExampleSystem, string>> {
  const installables = EXAMPLE_SYSTEMS.map((name) => `path:${EXAMPLES_DIR}#${name}`);
  const built = JSON.parse(
    await runOk("nix", ["build", "--no-link", "--json", ...installables]),
  ) as { outputs: { out: string } }[];
  // Nix does not list the results in the order of the installables: each system names itself.
  const byName = new Map<string, string>();
  for (const { outputs } of built) {
    byName.set((await readFile(`${outputs.out}/nixos-version`, "utf8")).trim(), outputs.out);
  }
  const paths = {} as Record<ExampleSystem, string>;
  for (const name of EXAMPLE_SYSTEMS) {
    const path = byName.get(name);
    if (!path) throw new Error(`nix build gave no system named ${name}: ${[...byName.keys()]}`);
    paths[name] = path;
  }
  return paths;
}

/**
 * The first lines of every host script: a private /run, loopback up, and helpers that print
 * `key=value` lines (newlines inside a value become '|') for the test to read back. When the
 * script ends, the service's log follows a `--- service log` line.
 */
const HOST_PRELUDE = String.raw`
set -u
mount -t tmpfs -o mode=0755 tmpfs /run
ip link set lo up
trap 'echo "--- service log"; cat /run/nixship-example-web.log 2>/dev/null' EXIT
put() { printf '%s=%s\n' "$1" "$(printf '%s' "$2" | tr '\n' '|')"; }
# act KEY SYSTEM ARGS...: runs SYSTEM's switch-to-configuration with ARGS.
act() {
  key=$1 sys=$2
  shift 2
  "$sys/bin/switch-to-configuration" "$@" >/run/test.out 2>/run/test.err
  put "$key.code" "$?"
  put "$key.stdout" "$(cat /run/test.out)"
  put "$key.stderr" "$(cat /run/test.err)"
}
# get KEY PATH: the status and body of GET PATH on this host's port 80 (status 000: no answer).
get() {
  : >/run/test.body
  put "$1.status" "$(curl -s --max-time 5 -o /run/test.body -w '%{http_code}' "http://127.0.0.1:80$2")"
  put "$1.body" "$(cat /run/test.body)"
}
current() { put "$1" "$(readlink /run/current-system)"; }
service_pid() { put "$1" "$(cat /run/nixship-example-web.pid 2>/dev/null)"; }
# state KEY PID: the process state (R, S, Z...), or "gone".
state() {
  s=$(sed 's/.*) //' "/proc/$2/stat" 2>/dev/null | cut -c1)
  [ -n "$s" ] || s=gone
  put "$1" "$s"
}
`;

/** What a host script printed: its `key=value` lines, and the whole transcript for messages. */
export class HostRun {
  readonly values = new Map<string, string>();
  readonly transcript: string;

  constructor(result: CliRun) {
    this.transcript = `exit ${result.code}\n--- stdout\n${result.stdout}\n--- stderr\n${result.stderr}`;
    for (const line of result.stdout.split("\n")) {
      if (line === "--- service log") break;
      const eq = line.indexOf("=");
      if (eq > 0) this.values.set(line.slice(0, eq), line.slice(eq + 1));
    }
  }

  /** The value the script printed for KEY; a missing key fails the test with the transcript. */
  get(key: string): string {
    const value = this.values.get(key);
    if (value === undefined) throw new Error(`the host printed no ${key}:\n${this.transcript}`);
    return value;
  }
}

/**
 * Runs SCRIPT as root in a throwaway host: new mount, network and pid namespaces, a private
 * /run tmpfs and loopback up. When the script ends, the pid namespace goes and every process
 * started in it (a detached service too) is killed; `timeout` bounds the whole run.
 */
export async function runInThrowawayHost(
  script: string,
  env: Record<string, string>,
  timeoutSeconds = 45,
): Promise<HostRun> {
  const result = await run(
    "timeout",
    [
      "-s",
      "KILL",
      String(timeoutSeconds),
      "unshare",
      "--mount",
      "--net",
      "--pid",
      "--fork",
      "--kill-child",
      "--mount-proc",
      "sh",
      "-c",
      HOST_PRELUDE + script,
    ],
    { env },
  );
  return new HostRun(result);
}
