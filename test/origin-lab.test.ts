// Who put each host's system there, and from what ("nobody is named"), on two lab
// ssh hosts: a deploy from a flake in a git work tree names, in `status --stored` (text and
// --json) and live `status`, the user and machine that ran it and the flake's commit, clean
// or dirty; a host a later deploy finds up to date keeps the first deploy's word; a host moved
// by a deploy from a dirty tree says so; a rollback names who ran it; and a rollout record that
// is gone is said to be gone, never guessed.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, unlink, writeFile } from "node:fs/promises";
import { hostname, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, runOk } from "../support/cli.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let repo: string;
let rev: string;

const BY = `${userInfo().username}@${hostname()}`;

beforeAll(async () => {
  // The example systems, in a git work tree of their own, committed.
  repo = await mkdtemp(join(tmpdir(), "nixship-origin-flake-"));
  await cp(EXAMPLES_DIR, repo, { recursive: true });
  const git = (...args: string[]) =>
    runOk("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.org", ...args]);
  await git("init", "-q");
  await git("add", "-A");
  await git("commit", "-q", "-m", "fleet");
  rev = (await git("rev-parse", "HEAD")).trim();
  lab = await startSshLab("wh", 2);
}, 120_000);
afterAll(async () => {
  await lab?.down();
  if (repo) await rm(repo, { recursive: true, force: true });
});

interface Origin {
  readonly kind: string;
  readonly ref: string | null;
  readonly by: string | null;
  readonly sources: readonly { flake: string; rev: string | null; dirty: boolean | null }[];
  readonly problem: string | null;
}

async function rows(...extra: string[]): Promise<Record<string, { origin?: Origin }>> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json", ...extra]);
  const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; origin?: Origin }[] }).hosts;
  return Object.fromEntries(hosts.map((h) => [h.host, h]));
}

/** Points the lab's hosts at the work tree's example systems. */
async function setSystems(systems: Record<string, string>): Promise<void> {
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const [host, name] of Object.entries(systems)) {
    const entry = doc.hosts[host];
    if (entry === undefined) throw new Error(`no host ${host}`);
    entry.system = `path:${repo}#${name}`;
  }
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}

describe("who put each host's system there, and from what", () => {
  let first: Origin;

  it("status --stored (json and text) and live status name the user, the machine and the flake's commit", async () => {
    await setSystems({ wh1: "web-v1", wh2: "web-v1" });
    const deployed = await lab.deploy("--json");
    expect(deployed.code, deployed.stderr).toBe(0);
    const stored = await rows("--stored");
    first = stored.wh1?.origin as Origin;
    expect(first).toMatchObject({
      kind: "rollout",
      ref: expect.stringMatching(/^[0-9a-f]{12}$/),
      by: BY,
      sources: [{ flake: repo, rev, dirty: false }],
      problem: null,
    });
    expect(stored.wh2?.origin).toEqual(first);
    const text = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored"]);
    expect(text.stdout).toContain(
      `deployed (rollout ${first.ref}) by ${BY} from ${repo} at ${rev.slice(0, 12)}`,
    );
    expect(text.stdout).not.toContain("dirty");
    // Asked live over ssh: the record's word holds while the host runs what it names.
    expect((await rows()).wh1?.origin).toEqual(first);
  });

  it("a host moved from a dirty tree says so; a host found up to date keeps the first deploy's word", async () => {
    // A tracked file changed, not committed: the systems are the same, the tree is dirty.
    const flake = join(repo, "flake.nix");
    await writeFile(flake, `${await readFile(flake, "utf8")}\n# changed by hand\n`);
    await setSystems({ wh1: "web-v2", wh2: "web-v1" });
    const deployed = await lab.deploy("--json");
    expect(deployed.code, deployed.stderr).toBe(0);
    const stored = await rows("--stored");
    expect(stored.wh2?.origin).toEqual(first);
    const moved = stored.wh1?.origin as Origin;
    expect(moved).toMatchObject({
      kind: "rollout",
      by: BY,
      sources: [{ flake: repo, rev, dirty: true }],
      problem: null,
    });
    expect(moved.ref).not.toBe(first.ref);
    const text = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored"]);
    expect(text.stdout).toMatch(
      new RegExp(
        `wh1 .*deployed \\(rollout ${moved.ref}\\) by .* at ${rev.slice(0, 12)} \\(dirty tree\\)`,
      ),
    );
  });

  it("a rollback names who ran it; a rollout record that is gone is said to be gone", async () => {
    const back = await lab.nixship(["rollback", "--fleet", lab.fleetFile, "--on", "wh1", "--json"]);
    expect(back.code, back.stderr).toBe(0);
    expect((await rows("--stored")).wh1?.origin).toMatchObject({
      kind: "rollback",
      by: BY,
      problem: null,
    });
    // The first rollout's record removed from the store: wh2's word cannot be told.
    const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
    const dir = new URL(fleet.cache.url).pathname;
    const records = await readdir(join(dir, "status", "rollouts"));
    const gone = records.find((f) => f.endsWith(`-${first.ref}.json`));
    expect(gone).toBeDefined();
    await unlink(join(dir, "status", "rollouts", gone as string));
    const wh2 = (await rows("--stored")).wh2?.origin;
    expect(wh2).toMatchObject({ kind: "rollout", ref: first.ref, by: null });
    expect(wh2?.problem).toMatch(/is gone/);
    const text = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored"]);
    expect(text.stdout).toMatch(/wh2 .*by whom unknown: its rollout record .* is gone/);
  });

  it("release publish signs who published the release and from what beside it, and release show names them", async () => {
    const releaseKeyFile = join(lab.info.dir, "release.sec");
    const gen = await lab.nixship([
      "key",
      "generate",
      "--name",
      "wh-release-1",
      "--out",
      releaseKeyFile,
    ]);
    expect(gen.code, gen.stderr).toBe(0);
    // The same hosts as agent hosts of a channel, in a fleet file of their own.
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      hosts: Record<string, { delivery?: string; sshHost?: string; system: string }>;
      [k: string]: unknown;
    };
    for (const h of Object.values(doc.hosts)) {
      h.delivery = "agent";
      h.system = `path:${repo}#web-v1`;
      delete h.sshHost;
    }
    doc.releases = { channel: "wh", publicKeys: [gen.stdout.trim()] };
    const fleetFile = join(lab.info.dir, "agents.json");
    await writeFile(fleetFile, JSON.stringify(doc, null, 2));
    const publishArgs = [
      ...["release", "publish", "--fleet", fleetFile, "--key", join(lab.info.dir, "cache.sec")],
      ...["--release-key", releaseKeyFile],
    ];
    await interruptedInItsBuild(publishArgs);
    const none = await lab.nixship([
      "release",
      "show",
      "latest",
      "--channel",
      "wh",
      "--fleet",
      fleetFile,
    ]);
    expect(none.code).not.toBe(0);
    const published = await lab.nixship([
      ...["release", "publish", "--fleet", fleetFile, "--key", join(lab.info.dir, "cache.sec")],
      ...["--release-key", releaseKeyFile, "--json"],
    ]);
    expect(published.code, published.stderr).toBe(0);
    const show = (...extra: string[]) =>
      lab.nixship(["release", "show", "latest", "--channel", "wh", "--fleet", fleetFile, ...extra]);
    const json = JSON.parse((await show("--json")).stdout) as { origin: unknown };
    // The tree is still dirty from the test before.
    expect(json.origin).toEqual({
      status: "trusted",
      keyName: "wh-release-1",
      by: BY,
      sources: [{ flake: repo, rev, dirty: true }],
    });
    const text = await show();
    expect(text.stdout).toContain(
      `  published  by ${BY} from ${repo} at ${rev.slice(0, 12)} (dirty tree) (signed by key 'wh-release-1')`,
    );
  });
});

/**
 * `nixship ARGS` interrupted once while Nix builds (a `nix` first on PATH stalls its build until
 * it is stopped): it stops the build and exits 130, and leaves nothing in its TMPDIR.
 */
async function interruptedInItsBuild(args: readonly string[]): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-stalled-build-"));
  try {
    const marker = join(dir, "building");
    const scratch = join(dir, "tmp");
    await mkdir(scratch);
    const real = (await runOk("sh", ["-c", "command -v nix"])).trim();
    await writeFile(
      join(dir, "nix"),
      `#!/bin/sh
case " $* " in *" build "*)
  : >'${marker}'; sleep 60 & pid=$!; trap 'kill $pid; exit 143' TERM; wait $pid; exit 1 ;;
esac
exec '${real}' "$@"
`,
      { mode: 0o755 },
    );
    const child = spawn(process.execPath, [NIXSHIP_BIN, ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, TMPDIR: scratch },
    });
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    child.stdout.resume();
    const code = new Promise<number | null>((resolve) => child.on("close", resolve));
    // Bounded: the build starts within seconds.
    for (let i = 0; i < 600 && !existsSync(marker); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(existsSync(marker), stderr).toBe(true);
    child.kill("SIGINT");
    expect(await code, stderr).toBe(130);
    expect(stderr).toContain("release publish: interrupted; stopping");
    expect(await readdir(scratch)).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
