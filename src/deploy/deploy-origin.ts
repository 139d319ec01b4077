// Who started a deploy and from what source, for its rollout record: the CI run (GitHub
// Actions, GitLab CI) or the user and machine, and each flake the selected hosts' systems come
// from, with its git revision and whether its work tree was dirty. Credentials never leave: a
// reference is kept as what identifies it (sourceReference), and nothing is read but git's own
// answers.
import { hostname, userInfo } from "node:os";
import type { FleetHost } from "../fleet/fleet.js";
import type { RolloutSource } from "../status/rollout.js";
import { runCommand } from "../util/run.js";
import { sourceReference, withoutSourceSecrets } from "../util/source-reference.js";
import { withoutControls } from "../util/text.js";
import { parseFlakeInstallable } from "./build.js";

/** The most flakes a record names (a fleet built from many is rare; more are counted). */
const MAX_SOURCES = 10;
/** Seconds each git question may take. */
const GIT_TIMEOUT = 10;

export interface DeployOrigin {
  readonly by: string;
  readonly sources: readonly RolloutSource[];
}

/** Who runs this deploy, from the environment: a CI run, else user@machine. */
export function deployedBy(env: NodeJS.ProcessEnv = process.env): string {
  // A CI's URLs are shown as what identifies them, whatever a runner put in them.
  const v = (k: string) => withoutSourceSecrets(withoutControls(env[k] ?? "")).slice(0, 200);
  if (env.GITHUB_ACTIONS === "true") {
    const run = `${v("GITHUB_SERVER_URL")}/${v("GITHUB_REPOSITORY")}/actions/runs/${v("GITHUB_RUN_ID")}`;
    return `GitHub Actions ${run} (${v("GITHUB_WORKFLOW")}, by ${v("GITHUB_ACTOR")})`;
  }
  if (env.GITLAB_CI === "true") {
    return `GitLab CI ${v("CI_JOB_URL")} (by ${v("GITLAB_USER_LOGIN")})`;
  }
  let user: string;
  try {
    user = userInfo().username;
  } catch {
    user = `uid ${process.getuid?.() ?? "?"}`;
  }
  // root through sudo: the person who ran sudo.
  const through = env.SUDO_USER && user === "root" ? ` (${v("SUDO_USER")} through sudo)` : "";
  return withoutControls(`${user}@${hostname()}${through}`).slice(0, 300);
}

/** The flakes the hosts' systems come from, each with its git revision where it has one. */
export async function deploySources(
  hosts: readonly FleetHost[],
  fleetDir: string,
): Promise<RolloutSource[]> {
  const flakes = new Map<string, string | undefined>();
  for (const host of hosts) {
    if (host.system.kind !== "flake") continue;
    const parsed = parseFlakeInstallable(host.system.installable, fleetDir);
    if (parsed.local !== undefined) flakes.set(sourceReference(parsed.local.dir), parsed.local.dir);
    else flakes.set(sourceReference(parsed.flake), undefined);
  }
  const named = [...flakes].slice(0, MAX_SOURCES);
  return Promise.all(
    named.map(async ([flake, dir]) =>
      dir === undefined ? { flake, rev: null, dirty: null } : { flake, ...(await gitState(dir)) },
    ),
  );
}

export async function deployOrigin(
  hosts: readonly FleetHost[],
  fleetDir: string,
): Promise<DeployOrigin> {
  return { by: deployedBy(), sources: await deploySources(hosts, fleetDir) };
}

/** A local flake's git revision and whether its tracked files changed (null: not in git). */
async function gitState(dir: string): Promise<{ rev: string | null; dirty: boolean | null }> {
  // Each answer is a line at most (rev-parse) or an exit code (diff --quiet), within a deadline.
  const git = async (args: string[]) =>
    runCommand("git", ["-C", dir, ...args], {
      okCodes: [0, 1, 128],
      purpose: "read the flake's git revision",
      signal: AbortSignal.timeout(GIT_TIMEOUT * 1000),
    }).catch(() => undefined);
  const rev = await git(["rev-parse", "HEAD"]);
  const head = rev?.code === 0 ? rev.stdout.trim() : "";
  if (!/^[0-9a-f]{40,64}$/.test(head)) return { rev: null, dirty: null };
  // A flake inside a work tree that does not track it (a lab's fleet written in a checkout)
  // does not come from that commit.
  const tracked = await git(["ls-files", "--error-unmatch", "--", "flake.nix"]);
  if (tracked?.code !== 0) return { rev: null, dirty: null };
  // Tracked files that differ from HEAD (staged or not): exit 1.
  const diff = await git(["diff", "--quiet", "HEAD", "--"]);
  return { rev: head, dirty: diff?.code === 0 ? false : diff?.code === 1 ? true : null };
}
