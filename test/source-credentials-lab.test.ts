// A credential in a flake reference goes nowhere nixship writes or shows, on a lab ssh host:
// a deploy and a release publish of a system named by a `git+file` reference with a password
// holding `@` in its userinfo and tokens in its query (Nix 2.8 fetches it: a local work tree's
// URL is read for its path alone) record the source as what identifies it (host, path, `ref`)
// in the rollout record and the release's origin, and no token is in the cache's store, the
// output of deploy, status and release show (text and --json), or the dashboard's pages, API
// and log.
import type { ChildProcess } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliRun } from "../support/cli.js";
import { NIXSHIP_BIN, runOk } from "../support/cli.js";
import { startDashboardProcess } from "../support/dashboard-store.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

/** Every secret the reference carries; each must be found nowhere. */
const SECRETS = ["p@ss_SECRETUSER", "SECRETUSER", "ghp_SECRETQUERY", "glpat-SECRETQUERY"];

let lab: SshLab;
let repo: string;
let reference: string;
let shown: string;
let agentsFleet: string;
let dashboard: ChildProcess | undefined;
let dashboardLog = "";
const outputs: { what: string; run: CliRun }[] = [];

/** The files under `dir`, every one, read whole. */
async function filesUnder(dir: string): Promise<{ path: string; text: string }[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  const files = entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  return Promise.all(files.map(async (path) => ({ path, text: await readFile(path, "latin1") })));
}

function expectNoSecret(where: string, text: string): void {
  for (const secret of SECRETS) expect(text.includes(secret), `${secret} in ${where}`).toBe(false);
}

async function ran(what: string, run: Promise<CliRun>): Promise<CliRun> {
  const r = await run;
  outputs.push({ what, run: r });
  expect(r.code, `${what}: ${r.stderr}`).toBe(0);
  return r;
}

beforeAll(async () => {
  // The example systems in a git work tree of their own, on branch main.
  repo = await mkdtemp(join(tmpdir(), "nixship-tokened-flake-"));
  await cp(EXAMPLES_DIR, repo, { recursive: true });
  const git = (...args: string[]) =>
    runOk("git", ["-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.org", ...args]);
  await git("init", "-q", "-b", "main");
  await git("add", "-A");
  await git("commit", "-q", "-m", "fleet");
  reference = `git+file://bot:p@ss_SECRETUSER@localhost${repo}?access_token=ghp_SECRETQUERY&ref=main&private_token=glpat-SECRETQUERY`;
  shown = `git+file://localhost${repo}?ref=main`;
  lab = await startSshLab("tok", 1);
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    hosts: Record<string, { delivery?: string; sshHost?: string; system: string }>;
    [k: string]: unknown;
  };
  for (const h of Object.values(doc.hosts)) h.system = `${reference}#web-v1`;
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}, 120_000);

afterAll(async () => {
  dashboard?.kill();
  await lab?.down();
  if (repo) await rm(repo, { recursive: true, force: true });
});

describe("a flake reference carrying credentials", () => {
  it("is deployed, and recorded as what identifies it", async () => {
    await ran("deploy --json", lab.deploy("--json"));
    const status = await ran(
      "status --stored --json",
      lab.nixship(["status", "--fleet", lab.fleetFile, "--stored", "--json"]),
    );
    const hosts = (
      JSON.parse(status.stdout) as { hosts: { origin?: { sources: { flake: string }[] } }[] }
    ).hosts;
    expect(hosts[0]?.origin?.sources).toEqual([{ flake: shown, rev: null, dirty: null }]);
    const text = await ran(
      "status --stored",
      lab.nixship(["status", "--fleet", lab.fleetFile, "--stored"]),
    );
    expect(text.stdout).toContain(`from ${shown}`);
    // A plain deploy (the text a terminal or CI log shows), found up to date.
    await ran("deploy", lab.deploy());
  });

  it("a deploy that fails on it says why without the token", async () => {
    const original = await readFile(lab.fleetFile, "utf8");
    const failing = async (system: string, why: RegExp) => {
      const doc = JSON.parse(original) as { hosts: Record<string, { system: string }> };
      for (const h of Object.values(doc.hosts)) h.system = system;
      await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
      for (const extra of [["--json"], []]) {
        const r = await lab.deploy(...extra);
        outputs.push({ what: `a failing deploy of ${system} ${extra.join(" ")}`, run: r });
        expect(r.code).not.toBe(0);
        expect(`${r.stdout}${r.stderr}`).toMatch(why);
      }
    };
    try {
      // An output the flake has not: named as shown.
      await failing(
        `${reference}#no-such-system`,
        /the flake has no output "git\+file:\/\/localhost/,
      );
      // A reference Nix refuses, quoting it in its error.
      await failing(
        `path:${repo}?access_token=ghp_SECRETQUERY#web-v1`,
        /unsupported parameter 'access_token'/,
      );
    } finally {
      await writeFile(lab.fleetFile, original);
    }
  });

  it("is published in a release's origin as what identifies it", async () => {
    const releaseKeyFile = join(lab.info.dir, "release.sec");
    const gen = await ran(
      "key generate",
      lab.nixship(["key", "generate", "--name", "tok-release-1", "--out", releaseKeyFile]),
    );
    const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      hosts: Record<string, { delivery?: string; sshHost?: string; system: string }>;
      [k: string]: unknown;
    };
    for (const h of Object.values(doc.hosts)) {
      h.delivery = "agent";
      delete h.sshHost;
    }
    doc.releases = { channel: "tok", publicKeys: [gen.stdout.trim()] };
    agentsFleet = join(lab.info.dir, "agents.json");
    await writeFile(agentsFleet, JSON.stringify(doc, null, 2));
    await ran(
      "release publish --json",
      lab.nixship([
        ...["release", "publish", "--fleet", agentsFleet, "--key", join(lab.info.dir, "cache.sec")],
        ...["--release-key", releaseKeyFile, "--json"],
      ]),
    );
    const show = (...extra: string[]) =>
      lab.nixship([
        "release",
        "show",
        "latest",
        "--channel",
        "tok",
        "--fleet",
        agentsFleet,
        ...extra,
      ]);
    const json = await ran("release show --json", show("--json"));
    expect((JSON.parse(json.stdout) as { origin: unknown }).origin).toMatchObject({
      status: "trusted",
      sources: [{ flake: shown, rev: null, dirty: null }],
    });
    const text = await ran("release show", show());
    expect(text.stdout).toContain(`from ${shown}`);
  });

  it("leaves no token in the cache's store, the dashboard, or anything nixship printed", async () => {
    const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
    const storeDir = new URL(fleet.cache.url).pathname;
    const files = await filesUnder(storeDir);
    // The records are there, with the reference as shown.
    const records = files.filter((f) => /status\/rollouts\/|\.origin\.json$/.test(f.path));
    expect(records.length).toBeGreaterThanOrEqual(2);
    for (const f of records) expect(f.text, f.path).toContain(shown.slice(0, 40));
    for (const f of files) expectNoSecret(f.path, f.text);
    for (const { what, run } of outputs) {
      expectNoSecret(`${what}'s stdout`, run.stdout);
      expectNoSecret(`${what}'s stderr`, run.stderr);
    }

    const started = await startDashboardProcess(NIXSHIP_BIN, [
      ...["--fleet", agentsFleet, "--interval", "0.5"],
    ]);
    dashboard = started.child;
    dashboard.stderr?.on("data", (d: Buffer) => {
      dashboardLog += d.toString();
    });
    const get = async (path: string) => {
      const r = await fetch(`${started.url}${path}`);
      expect(r.status, path).toBe(200);
      return r.text();
    };
    // The first poll may still run: the API answers 503 until it is done.
    await expect
      .poll(async () => (await fetch(`${started.url}/api/hosts`)).status, { timeout: 30_000 })
      .toBe(200);
    const host = lab.info.hosts[0]?.name as string;
    const pages = {
      "/": await get("/"),
      "/rollout": await get("/rollout"),
      [`/hosts/${host}`]: await get(`/hosts/${host}`),
      "/releases": await get("/releases"),
      "/releases/tok/1": await get("/releases/tok/1"),
      "/api/hosts": await get("/api/hosts"),
      [`/api/hosts/${host}`]: await get(`/api/hosts/${host}`),
      "/api/rollout": await get("/api/rollout"),
      "/api/releases": await get("/api/releases"),
      "/api/releases/tok": await get("/api/releases/tok"),
    };
    // The rollout and the release name the source, as shown.
    expect(pages["/rollout"]).toContain(`<code>${shown}</code>`);
    expect(pages["/releases/tok/1"]).toContain(shown);
    expect(pages["/api/rollout"]).toContain(JSON.stringify(shown));
    for (const [path, body] of Object.entries(pages))
      expectNoSecret(`the dashboard's ${path}`, body);
    expectNoSecret("the dashboard's log", dashboardLog);
  });
});
