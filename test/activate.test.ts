// The activation contract on real lab hosts: activate.sh piped over SSH (`sh -s`), the real
// Nix substituting from our cache (served on the lab's bridge) with only our key trusted,
// the example systems' switch-to-configuration, health checks, magic rollback, rollback and
// status. Nothing is installed on the hosts.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ACTIVATE_EXIT,
  type ActivateOptions,
  type ActivationResult,
  abortArgs,
  activateArgs,
  activateScript,
  answerOf,
  CHECK_PATHS_VARIABLE,
  confirmArgs,
  parseActivationResult,
  pruneArgs,
  rollbackArgs,
  scriptInput,
  statusArgs,
} from "../src/host/activation.js";
import { shellQuote } from "../src/util/shell-quote.js";
import { nixship, run, runOk } from "../support/cli.js";
import { type RunningServer, serveLabCache } from "../support/serve.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";
import { type FreshSystems, ownSystems } from "./support/fresh-systems.js";

const LAB = "at";
let work: string;
let labsDir: string;
let sshConfig: string;
let systems: Record<ExampleSystem, string>;
/**
 * web-v1 as this run alone has it (its own nonce): the prune test's system that only removed
 * generations hold. The lab's hosts share the machine's processes, and Nix's collector keeps a
 * path any process on the machine has open, so the examples' own web-v1, which other tests'
 * hosts and deployers run and read, could stay.
 */
let ownV1: string;
let own: FreshSystems;
let server: RunningServer;
let publicKey: string;
const addresses = new Map<string, string>();

interface HostRun {
  readonly code: number;
  readonly result: ActivationResult;
  readonly stderr: string;
}

/**
 * Pipes activate.sh to the host over SSH; `fresh` forces a new connection (no ControlMaster);
 * `shell` reads it (the lab's sh is dash; NixOS's is bash).
 */
async function onHost(
  host: string,
  args: readonly string[],
  fresh = false,
  variables: Record<string, string> = {},
  shell: "sh" | "bash" = "sh",
): Promise<HostRun> {
  const quoted = args.map(shellQuote).join(" ");
  const r = await run(
    "ssh",
    [
      "-F",
      sshConfig,
      ...(fresh ? ["-o", "ControlPath=none"] : []),
      host,
      `${shell} -s -- ${quoted}`,
    ],
    { input: Buffer.from(scriptInput(variables)) },
  );
  return { code: r.code, result: parseActivationResult(r.stdout, host), stderr: r.stderr };
}

function activate(host: string, system: ExampleSystem, extra: Partial<ActivateOptions> = {}) {
  return activatePath(host, systems[system], extra);
}

function activatePath(
  host: string,
  path: string,
  extra: Partial<ActivateOptions> = {},
  shell: "sh" | "bash" = "sh",
) {
  return onHost(
    host,
    activateArgs({
      path,
      action: "switch",
      substituters: [server.url],
      trustedKeys: [publicKey],
      ...extra,
    }),
    false,
    {},
    shell,
  );
}

/** What the host serves, asked from the deployer over the lab's bridge. */
async function served(host: string, route = "/version"): Promise<{ status: string; body: string }> {
  const r = await run("curl", [
    "-s",
    "--max-time",
    "5",
    "-w",
    "\n%{http_code}",
    `http://${addresses.get(host)}${route}`,
  ]);
  const lines = r.stdout.split("\n");
  return { status: lines.at(-1) ?? "", body: lines.slice(0, -1).join("\n") };
}

async function servedName(host: string): Promise<string> {
  const { body } = await served(host);
  return body ? (JSON.parse(body) as { name: string }).name : "(nothing)";
}

async function status(host: string) {
  const { result } = await onHost(host, statusArgs());
  const answer = answerOf(result, "status");
  if (answer === undefined) throw new Error("no status");
  return answer;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-activate-"));
  labsDir = join(work, "labs");
  systems = await buildExampleSystems();
  own = await ownSystems({ "web-v1": `name = "web-v1"; version = "1";` });
  const built = JSON.parse(
    await runOk("nix", ["build", "--no-link", "--json", `path:${own.dir}#web-v1`]),
  ) as { outputs: { out: string } }[];
  ownV1 = built[0]?.outputs.out ?? "";
  const up = await nixship(["lab", "up", "3", "--name", LAB, "--json"], {
    env: { NIXSHIP_LAB_DIR: labsDir },
  });
  expect(up.code, up.stderr).toBe(0);
  const lab = JSON.parse(up.stdout) as {
    number: number;
    hosts: { name: string; address: string }[];
    files: { sshConfig: string };
  };
  sshConfig = lab.files.sshConfig;
  for (const h of lab.hosts) addresses.set(h.name, h.address);
  ({ server, publicKey } = await serveLabCache(
    work,
    [...Object.values(systems), ownV1],
    `10.231.${lab.number}.1`,
  ));
});

afterAll(async () => {
  await server?.stop();
  await nixship(["lab", "down", "--name", LAB], { env: { NIXSHIP_LAB_DIR: labsDir } });
  await rm(work, { recursive: true, force: true });
  await own?.remove();
});

describe("activate.sh on a lab host", () => {
  it("is clean under shellcheck", async () => {
    const r = await run("shellcheck", ["-s", "sh", "-"], { input: Buffer.from(activateScript()) });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("substitutes the system from the cache, sets the profile and switches to it", async () => {
    const { code, result } = await activate(`${LAB}1`, "web-v1");
    expect(code, JSON.stringify(result)).toBe(0);
    expect(result).toMatchObject({ ok: true, result: "activated", generation: 1, previous: null });
    expect(await servedName(`${LAB}1`)).toBe("web-v1");
    const s = await status(`${LAB}1`);
    expect(s).toMatchObject({
      current: systems["web-v1"],
      profile: systems["web-v1"],
      generation: 1,
    });
  });

  it("status --check-paths names the paths the host's store lacks, read from the script's input", async () => {
    const absent = `/nix/store/${"z".repeat(32)}-never-built-a?b`;
    const asked = [systems["web-v1"], absent, systems["web-v2"]];
    const { code, result } = await onHost(`${LAB}1`, statusArgs(true), false, {
      [CHECK_PATHS_VARIABLE]: asked.join("\n"),
    });
    expect(code).toBe(0);
    const hash = (p: string) => p.slice("/nix/store/".length, "/nix/store/".length + 32);
    // web-v1 was just substituted; web-v2 has not been yet.
    expect(result).toMatchObject({
      command: "status",
      missing: [hash(absent), hash(systems["web-v2"])],
    });
    // Not asked: no list.
    expect((await onHost(`${LAB}1`, statusArgs())).result).not.toHaveProperty("missing");
  });

  it("status --check-paths takes empty lines, and names the first line that is no store path", async () => {
    const longest = `/nix/store/${"a".repeat(32)}-${"n".repeat(211)}`;
    const cases: { lines: string[]; bad?: number }[] = [
      { lines: ["", systems["web-v1"], "", longest, ""] },
      { lines: [systems["web-v1"], "", `${systems["web-v1"]} x`], bad: 3 },
      { lines: [`/nix/store/${"a".repeat(32)}-${"n".repeat(212)}`], bad: 1 },
      { lines: [systems["web-v1"], `/nix/store/${"e".repeat(32)}-x`], bad: 2 },
      { lines: [systems["web-v1"], "--option"], bad: 2 },
      { lines: [`/nix/store/${"a".repeat(31)}-x`], bad: 1 },
    ];
    for (const { lines, bad } of cases) {
      const { code, result } = await onHost(`${LAB}1`, statusArgs(true), false, {
        [CHECK_PATHS_VARIABLE]: lines.join("\n"),
      });
      if (bad === undefined) {
        expect(code, lines.join("|")).toBe(0);
        expect(result).toMatchObject({ command: "status", missing: ["a".repeat(32)] });
      } else {
        expect(code, lines.join("|")).toBe(ACTIVATE_EXIT.usage);
        expect((result as { message: string }).message).toContain(
          `line ${bad} of the paths is not a store path in canonical form`,
        );
      }
    }
  });

  it("refuses a path signed by a key the host does not trust, changing nothing", async () => {
    const { code, result } = await activate(`${LAB}1`, "web-v2", {
      trustedKeys: ["other-cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I="],
    });
    expect(code).toBe(ACTIVATE_EXIT.realise);
    expect(result).toMatchObject({ ok: false, phase: "realise", rolledBack: false });
    expect((result as { message: string }).message).toMatch(
      /^cannot realise \/nix\/store\/\S+ from http:\S+: not there, not signed by a trusted key, or its copy there is corrupt \(the log above says which\)$/,
    );
    expect(await servedName(`${LAB}1`)).toBe("web-v1");
    expect((await status(`${LAB}1`)).generation).toBe(1);
  });

  it("names a substituter it cannot reach, rather than blaming the keys", async () => {
    // A port on the deployer's bridge address where nothing listens.
    const closed = server.url.replace(/:\d+$/, ":1");
    const { code, result } = await activate(`${LAB}1`, "web-v3", { substituters: [closed] });
    expect(code).toBe(ACTIVATE_EXIT.realise);
    expect((result as { message: string }).message).toMatch(
      new RegExp(
        `^cannot realise /nix/store/\\S+: the substituter ${closed} cannot be reached \\(curl: \\(7\\) .*\\)$`,
      ),
    );
    expect(await servedName(`${LAB}1`)).toBe("web-v1");
  });

  it("keeps a system the deployer confirms over a new connection", async () => {
    const { code, result } = await activate(`${LAB}1`, "web-v2", {
      confirmTimeout: 30,
      token: "t-confirm",
    });
    expect(code, JSON.stringify(result)).toBe(0);
    expect(result).toMatchObject({ result: "awaiting-confirmation", generation: 2 });
    // Another activation must wait while one awaits confirmation.
    const locked = await activate(`${LAB}1`, "web-v3");
    expect(locked.code).toBe(ACTIVATE_EXIT.locked);
    const confirmed = await onHost(`${LAB}1`, confirmArgs("t-confirm"), true);
    expect(confirmed.code, JSON.stringify(confirmed.result)).toBe(0);
    expect(confirmed.result).toMatchObject({ result: "confirmed", generation: 2 });
    expect(await servedName(`${LAB}1`)).toBe("web-v2");
  });

  it("rolls back by itself when no confirmation comes within the window", async () => {
    const { code } = await activate(`${LAB}1`, "web-v3", { confirmTimeout: 2, token: "t-silent" });
    expect(code).toBe(0);
    expect(await servedName(`${LAB}1`)).toBe("web-v3");
    const deadline = Date.now() + 20_000;
    // Until the watcher has switched back and freed the lock.
    const back = async () => {
      const s = await status(`${LAB}1`);
      return s.current === systems["web-v2"] && s.activation === null;
    };
    while (!(await back()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
    }
    // The profile (what the host boots next) is back on the previous generation too.
    expect(await status(`${LAB}1`)).toMatchObject({
      current: systems["web-v2"],
      profile: systems["web-v2"],
      generation: 2,
      activation: null,
    });
    expect(await servedName(`${LAB}1`)).toBe("web-v2");
    // A confirmation that comes too late is told so.
    const late = await onHost(`${LAB}1`, confirmArgs("t-silent"), true);
    expect(late.code).toBe(ACTIVATE_EXIT.unconfirmed);
    expect(late.result).toMatchObject({ result: "rolled-back" });
  });

  it("rolls back at once when the deployer aborts", async () => {
    const started = await activate(`${LAB}1`, "web-v3", { confirmTimeout: 60, token: "t-abort" });
    expect(started.code, JSON.stringify(started.result)).toBe(0);
    const aborted = await onHost(`${LAB}1`, abortArgs("t-abort"), true);
    expect(aborted.code, JSON.stringify(aborted.result)).toBe(0);
    expect(aborted.result).toMatchObject({ result: "rolled-back", current: systems["web-v2"] });
    expect(await servedName(`${LAB}1`)).toBe("web-v2");
    expect(await status(`${LAB}1`)).toMatchObject({
      profile: systems["web-v2"],
      generation: 2,
      activation: null,
    });
  });

  it("rolls back when switch-to-configuration fails (exit 4, as NixOS)", async () => {
    const { code, result } = await activate(`${LAB}1`, "web-failing");
    expect(code).toBe(ACTIVATE_EXIT.switch);
    expect(result).toMatchObject({ ok: false, phase: "switch", rolledBack: true, generation: 2 });
    expect(await servedName(`${LAB}1`)).toBe("web-v2");
    expect(await status(`${LAB}1`)).toMatchObject({
      current: systems["web-v2"],
      profile: systems["web-v2"],
      generation: 2,
    });
  });

  it("rolls back when a health check fails", async () => {
    const { code, result } = await activate(`${LAB}1`, "web-broken", {
      healthChecks: [{ run: "curl -fsS --max-time 3 http://127.0.0.1/health", timeout: 10 }],
    });
    expect(code).toBe(ACTIVATE_EXIT.health);
    expect(result).toMatchObject({ ok: false, phase: "health", rolledBack: true });
    // It says why: the check, its exit code (curl -f: 22) and what it printed last.
    expect(result).toMatchObject({
      message: expect.stringMatching(
        /^health check failed: curl -fsS --max-time 3 http:\/\/127\.0\.0\.1\/health: exit code 22 \(\d+ attempts? in 10s\); output: "curl: \(22\) The requested URL returned error: 500"$/,
      ),
    });
    expect(await servedName(`${LAB}1`)).toBe("web-v2");
    expect((await served(`${LAB}1`, "/health")).status).toBe("200");
    expect(await status(`${LAB}1`)).toMatchObject({
      current: systems["web-v2"],
      profile: systems["web-v2"],
      generation: 2,
      activation: null,
    });
  });

  it("rolls back to the previous generation, or to a given one, on request", async () => {
    const host = `${LAB}2`;
    for (const system of ["web-v1", "web-v2", "web-v3"] as const) {
      expect((await activate(host, system)).code).toBe(0);
    }
    const back = await onHost(host, rollbackArgs());
    expect(back.code, JSON.stringify(back.result)).toBe(0);
    expect(back.result).toMatchObject({ result: "rolled-back", from: 3, generation: 2 });
    expect(await servedName(host)).toBe("web-v2");
    const toFirst = await onHost(host, rollbackArgs(1));
    expect(toFirst.result).toMatchObject({ result: "rolled-back", generation: 1 });
    expect(await servedName(host)).toBe("web-v1");
    const s = await status(host);
    expect(s.generations.map((g) => g.generation)).toEqual([1, 2, 3]);
    expect(s).toMatchObject({ current: systems["web-v1"], generation: 1 });
    const none = await onHost(host, rollbackArgs(9));
    expect(none.code).toBe(ACTIVATE_EXIT.noGeneration);
    expect(none.result).toMatchObject({
      message: "no generation 9 in /nix/var/nix/profiles/system",
    });
    // On its oldest generation, a rollback says there is none to go back to.
    const oldest = await onHost(host, rollbackArgs());
    expect(oldest.code).toBe(ACTIVATE_EXIT.noGeneration);
    expect(oldest.result).toMatchObject({
      message:
        "no generation before 1 in /nix/var/nix/profiles/system: the host is on its oldest, there is none to go back to",
    });
  });

  it("runs piped to bash, NixOS's sh, as to dash: activates, is confirmed and reports", async () => {
    // bash evaluates the script at once (pipedShellInput); the watcher and its here-document,
    // the lock and the confirmation all run under it. (The host runs web-v1, generation 1.)
    const host = `${LAB}2`;
    const extra = { confirmTimeout: 30, token: "t-bash" };
    const activated = await activatePath(host, systems["web-v3"], extra, "bash");
    expect(activated.code, activated.stderr).toBe(0);
    expect(activated.result).toMatchObject({ result: "awaiting-confirmation", generation: 4 });
    const confirmed = await onHost(host, confirmArgs("t-bash"), true, {}, "bash");
    expect(confirmed.code, confirmed.stderr).toBe(0);
    expect(confirmed.result).toMatchObject({ result: "confirmed", generation: 4 });
    expect(await servedName(host)).toBe("web-v3");
    const asked = await onHost(
      host,
      statusArgs(true),
      false,
      {
        [CHECK_PATHS_VARIABLE]: `${systems["web-v3"]}\n/nix/store/${"z".repeat(32)}-never-built`,
      },
      "bash",
    );
    expect(asked.code, asked.stderr).toBe(0);
    expect(asked.result).toMatchObject({ command: "status", missing: ["z".repeat(32)] });
    expect(answerOf(asked.result, "status")).toMatchObject({
      current: systems["web-v3"],
      generation: 4,
    });
  });

  it("with --expect-current, changes nothing on a host that runs another system (exit 14), and goes ahead on one that runs it", async () => {
    const host = `${LAB}2`;
    // The bash test left it on web-v3, generation 4.
    const before = await status(host);
    expect(before.current).toBe(systems["web-v3"]);
    const token = "expect-t1";
    const changed = await activate(host, "web-v1", {
      expectCurrent: systems["web-v2"],
      token,
      confirmTimeout: 30,
    });
    expect(changed.code, JSON.stringify(changed.result)).toBe(ACTIVATE_EXIT.changed);
    expect(changed.result).toMatchObject({
      ok: false,
      result: "changed",
      rolledBack: false,
      previous: systems["web-v3"],
      generation: before.generation,
    });
    const message = (changed.result as { message: string }).message;
    expect(message).toContain(`it runs ${systems["web-v3"]}, not ${systems["web-v2"]}`);
    expect(await servedName(host)).toBe("web-v3");
    const after = await status(host);
    expect(after).toMatchObject({ current: systems["web-v3"], generation: before.generation });
    expect(after.generations).toEqual(before.generations);
    expect(after.activation ?? null).toBeNull();
    // Nothing began under its token: an abort that asks after it hears so.
    const asked = await onHost(host, abortArgs(token));
    expect(asked.result).toMatchObject({ command: "abort", result: "unknown-token" });

    const ahead = await activate(host, "web-v1", {
      expectCurrent: systems["web-v3"],
      token: "expect-t2",
    });
    expect(ahead.code, JSON.stringify(ahead.result)).toBe(0);
    expect(await servedName(host)).toBe("web-v1");
    // Asked after (as when its answer is lost), its token says it ended activated: no window
    // waits, nothing is undone, and it is not taken for one that never began.
    const late = await onHost(host, abortArgs("expect-t2"));
    expect(late.code).toBe(ACTIVATE_EXIT.unconfirmed);
    expect(late.result).toMatchObject({
      command: "abort",
      result: "activated",
      message: `the activation had ended, activated, before it was asked: the host runs ${systems["web-v1"]}`,
      current: systems["web-v1"],
    });
    expect(await servedName(host)).toBe("web-v1");
    const bad = await activate(host, "web-v2", { expectCurrent: "web-v3" });
    expect(bad.code).toBe(ACTIVATE_EXIT.usage);
    expect(bad.result).toMatchObject({
      result: "usage",
      message: expect.stringContaining("--expect-current"),
    });
  });

  it("an abort that comes before its activation began cancels it: that activation ends at once and changes nothing; --keep-token does not cancel", async () => {
    const host = `${LAB}2`;
    // The test above left it on web-v1.
    const before = await status(host);
    // The deployer was interrupted while its activate command was on the way: its abort finds
    // nothing under the token, and says that nothing will begin under it.
    const asked = await onHost(host, abortArgs("early-t1"));
    expect(asked.code).toBe(9);
    expect(asked.result).toMatchObject({
      command: "abort",
      result: "unknown-token",
      message: "no activation is waiting for token early-t1; none will begin under it now",
    });
    // The activation arrives after it: it changes nothing, and says why.
    const late = await activate(host, "web-v2", { token: "early-t1", confirmTimeout: 30 });
    expect(late.code, late.stderr).toBe(ACTIVATE_EXIT.unconfirmed);
    expect(late.result).toMatchObject({
      ok: false,
      result: "failed",
      phase: "realise",
      message: "aborted by the deployer before it began",
      rolledBack: false,
      generation: before.generation,
    });
    expect(await servedName(host)).toBe("web-v1");
    expect(await status(host)).toMatchObject({
      current: before.current,
      generation: before.generation,
      generations: before.generations,
      activation: null,
    });
    // Asked after, the token names that outcome.
    const again = await onHost(host, abortArgs("early-t1"));
    expect(again.result).toMatchObject({
      command: "abort",
      result: "rolled-back",
      message: "aborted by the deployer before it began",
    });
    // --keep-token (a deployer that will activate under the token itself) cancels nothing.
    const kept = await onHost(host, abortArgs("early-t2", true));
    expect(kept.result).toMatchObject({
      result: "unknown-token",
      message: "no activation is waiting for token early-t2",
    });
    const ahead = await activate(host, "web-v2", { token: "early-t2" });
    expect(ahead.code, ahead.stderr).toBe(0);
    expect(await servedName(host)).toBe("web-v2");
  });

  it("removes outcomes and cancels hours old, at most once an hour: /run keeps no file a deploy for good", async () => {
    const host = `${LAB}2`;
    const sh = async (command: string) => {
      const r = await run("ssh", ["-F", sshConfig, host, command]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    // The last sweep, two hours ago, listed two files (and one since gone); one came after it.
    await sh(
      "cd /run/nixship && printf 'x\\n' > result-old-a && : > abort-old-b && : > result-new-c && " +
        "printf '%s\\n' $(( $(date +%s) - 7200 )) result-old-a abort-old-b result-gone > swept",
    );
    const first = await activate(host, "web-v2", { token: "sweep-t1" });
    expect(first.code, first.stderr).toBe(0);
    expect(
      (await sh("cd /run/nixship && ls result-* abort-* swept 2>/dev/null || true")).split("\n"),
    ).toEqual(expect.arrayContaining(["result-new-c", "result-sweep-t1", "swept"]));
    expect(await sh("ls /run/nixship")).not.toMatch(/old-a|old-b/);
    // What is there now is listed for the next sweep, under its time.
    const [at, ...listed] = (await sh("cat /run/nixship/swept")).trim().split("\n");
    expect(Math.abs(Number(at) - Date.now() / 1000)).toBeLessThan(120);
    expect(listed).toContain("result-new-c");
    expect(listed).not.toContain("result-old-a");
    // Within the hour, no sweep: a file the list names stays.
    const second = await activate(host, "web-v2", { token: "sweep-t2" });
    expect(second.code, second.stderr).toBe(0);
    expect(await sh("ls /run/nixship")).toContain("result-new-c");
    await sh("rm -f /run/nixship/result-new-c");
  });

  it("cannot roll back a first deploy that fails, and says so", async () => {
    const { code, result } = await activate(`${LAB}3`, "web-failing");
    expect(code).toBe(ACTIVATE_EXIT.switch);
    expect(result).toMatchObject({ ok: false, rolledBack: false, previous: null });
  });

  it("answers bad usage with exit 2 and a JSON message", async () => {
    const r = await onHost(`${LAB}3`, ["activate", "--path", "/etc/passwd"]);
    expect(r.code).toBe(ACTIVATE_EXIT.usage);
    expect(r.result).toMatchObject({ ok: false, result: "usage" });
    // Messages carrying quotes, backslashes and control characters stay valid JSON.
    const odd = await onHost(`${LAB}3`, ["activate", "--path", 'x"y\\z\tw']);
    expect(odd.code).toBe(ACTIVATE_EXIT.usage);
    expect(odd.result).toMatchObject({ message: expect.stringContaining('x"y\\z') });
    const unknown = await onHost(`${LAB}3`, ["explode"]);
    expect(unknown.code).toBe(ACTIVATE_EXIT.usage);
    // timeout(1) reads 0 as no timeout at all: a check must end, within a day.
    for (const seconds of ["0", "86401"]) {
      const r = await onHost(`${LAB}3`, [
        "check",
        "--health-timeout",
        seconds,
        "--health-once",
        "sleep 1",
      ]);
      expect(r.code, seconds).toBe(ACTIVATE_EXIT.usage);
      expect(r.result).toMatchObject({
        message: "check: --health-timeout must be whole seconds from 1 to 86400",
      });
    }
  });

  it("takes over a lock whose holder was killed, but not one whose holder lives", async () => {
    const host = `${LAB}3`;
    const ssh = (command: string) => run("ssh", ["-F", sshConfig, host, command]);
    // A holder that is gone (an activation killed along with its agent) leaves a stale lock.
    await ssh(
      "mkdir -p /run/nixship/lock && echo '2147483646 activate /nix/store/gone' > /run/nixship/lock/owner",
    );
    const taken = await activate(host, "web-v2");
    expect(taken.code, JSON.stringify(taken.result)).toBe(0);
    expect(taken.stderr).toContain("taking over a stale lock");
    // A live holder keeps it.
    await ssh(
      'mkdir -p /run/nixship/lock && echo "1 activate /nix/store/live" > /run/nixship/lock/owner',
    );
    const refused = await activate(host, "web-v2");
    expect(refused.code).toBe(ACTIVATE_EXIT.locked);
    expect(refused.result).toMatchObject({ message: expect.stringContaining("/nix/store/live") });
    // An older script's lock records no deadline: it is held while its process lives.
    expect(refused.result).toMatchObject({
      message: expect.stringContaining("pid 1, since "),
      deadline: null,
    });
    expect((await status(host)).activation).toMatchObject({
      command: "activate /nix/store/live",
      pid: 1,
      deadline: null,
      stale: false,
    });
    await ssh("rm -rf /run/nixship/lock");
  });

  it("prune keeps the newest generations, the current one and its rollback target, and collects the rest", async () => {
    const host = `${LAB}1`;
    const valid = async (path: string) =>
      (await run("ssh", ["-F", sshConfig, host, `nix-store --check-validity ${path}`])).code === 0;
    for (const path of [systems["web-v3"], ownV1, systems["web-v2"], systems["web-v3"]]) {
      expect((await activatePath(host, path)).code).toBe(0);
    }
    const before = await status(host);
    const newest = before.generation as number;
    expect(await valid(ownV1)).toBe(true);
    // One kept: the newest, and the generation a rollback would go back to.
    const pruned = await onHost(host, pruneArgs(1));
    expect(pruned.code, pruned.stderr).toBe(0);
    const removed = before.generations.map((g) => g.generation).filter((g) => g < newest - 1);
    expect(pruned.result).toMatchObject({
      ok: true,
      command: "prune",
      kept: [newest - 1, newest],
      removed,
      gc: "done",
      deletedPaths: expect.any(Number),
      freedMiB: expect.any(Number),
    });
    expect((await status(host)).generations.map((g) => g.generation)).toEqual([newest - 1, newest]);
    // web-v1 was only in the removed generations: the collector took it; the kept ones stay.
    const rootsOfV1 = await run("ssh", [
      "-F",
      sshConfig,
      host,
      `nix-store --query --roots ${ownV1} 2>&1 | head -c 4000`,
    ]);
    expect(await valid(ownV1), `what roots web-v1:\n${rootsOfV1.stdout}`).toBe(false);
    expect(await valid(systems["web-v2"])).toBe(true);
    expect(await valid(systems["web-v3"])).toBe(true);
    // Rolled back, the current generation is not the newest: it stays, with the newest.
    const back = await onHost(host, rollbackArgs());
    expect(back.result).toMatchObject({ result: "rolled-back", generation: newest - 1 });
    expect(await servedName(host)).toBe("web-v2");
    const again = await onHost(host, pruneArgs(1));
    expect(again.result).toMatchObject({ kept: [newest - 1, newest], removed: [] });
    expect(await servedName(host)).toBe("web-v2");
    const bad = await onHost(host, ["prune", "--keep", "0"]);
    expect(bad.code).toBe(ACTIVATE_EXIT.usage);
    expect(bad.result).toMatchObject({ message: expect.stringContaining("--keep") });
  });

  describe("a command check that fails says why", () => {
    // (After the lock tests, LAB3 runs web-v2: each failed check below takes it back there.)
    const host = `${LAB}3`;
    const failedCheck = async (check: string, timeout = 2) => {
      const run = await activate(host, "web-v3", { healthChecks: [{ run: check, timeout }] });
      expect(run.code, JSON.stringify(run.result)).toBe(ACTIVATE_EXIT.health);
      expect(run.result).toMatchObject({ ok: false, phase: "health", rolledBack: true });
      expect(await servedName(host)).toBe("web-v2");
      return { ...run, message: (run.result as { message: string }).message };
    };
    /** The message with its count of attempts (1 or 2 in 2 s) as "N". */
    const attemptsAside = (message: string) => message.replace(/\(\d+ attempts? in/, "(N in");

    it("its exit code and its last 10 lines of stdout and stderr, without control characters", async () => {
      const check = String.raw`i=0; while [ $i -lt 30 ]; do echo "line $i"; i=$((i+1)); done; printf 'esc \033[31mred\033[0m\tbell\007 cr\r del\177 c1\302\233 end\n'; echo 'to stderr' >&2; exit 3`;
      const { message, stderr } = await failedCheck(check);
      const last = [22, 23, 24, 25, 26, 27, 28, 29].map((i) => `line ${i}`);
      const output = [...last, "esc [31mred[0m bell cr del c1 end", "to stderr"].join(" | ");
      expect(attemptsAside(message)).toBe(
        `health check failed: ${check}: exit code 3 (N in 2s); output: "${output}"`,
      );
      // The whole output is still logged, as it came.
      expect(stderr).toContain("line 0\n");
      expect(stderr).toContain("\u001b[31mred");
    });

    it("at most the last 1000 bytes of its output, and the first 500 of its command", async () => {
      const check = `: ${"n".repeat(600)}; head -c 3000 /dev/zero | tr '\\0' y; echo; exit 4`;
      const { message } = await failedCheck(check);
      expect(attemptsAside(message)).toBe(
        `health check failed: ${check.slice(0, 500)}...: exit code 4 (N in 2s); output: "${"y".repeat(999)}"`,
      );
    });

    it("that its timeout stopped it, with what it printed until then; nothing is left behind", async () => {
      const { message } = await failedCheck("echo started; sleep 60");
      expect(message).toBe(
        'health check failed: echo started; sleep 60: still running when the health timeout of 2s ran out; stopped it (1 attempt in 2s); output: "started"',
      );
      // A check that passes still passes, its output logged.
      const passed = await activate(host, "web-v3", {
        healthChecks: [{ run: "echo healthy", timeout: 30 }],
      });
      expect(passed.code, JSON.stringify(passed.result)).toBe(0);
      expect(passed.stderr).toContain("healthy");
      // The output's files went with the activations.
      const listed = await run("ssh", ["-F", sshConfig, host, "ls -A /run/nixship"]);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).not.toContain("health");
    });

    it("by its own exit code when a process it started keeps its output open", async () => {
      // (The host runs web-v3 since the tests before, and again after this one.)
      const failed = await activate(host, "web-v2", {
        healthChecks: [{ run: "setsid sleep 302.3 & echo down; exit 3", timeout: 3, retry: false }],
      });
      expect(failed.code, JSON.stringify(failed.result)).toBe(ACTIVATE_EXIT.health);
      expect((failed.result as { message: string }).message).toBe(
        'health check failed: setsid sleep 302.3 & echo down; exit 3: exit code 3 (1 attempt only: retry false); output: "down"',
      );
      const passed = await activate(host, "web-v3", {
        healthChecks: [{ run: "setsid sleep 301.7 & exit 0", timeout: 10 }],
      });
      expect(passed.code, JSON.stringify(passed.result)).toBe(0);
      expect(passed.stderr).toContain(
        "health: setsid sleep 301.7 & exit 0: a process it started kept its output open; not waited for",
      );
      await run("ssh", ["-F", sshConfig, host, "pkill -f 'sleep 30[12]' || true"]);
      expect(await servedName(host)).toBe("web-v3");
    });

    it("within its own timeout: a check of 2 s after one of 20 s is stopped at 2 s", async () => {
      const run = await activate(host, "web-v2", {
        healthChecks: [
          { run: "echo ok", timeout: 20 },
          { run: "echo started; sleep 60", timeout: 2 },
        ],
      });
      expect(run.code, JSON.stringify(run.result)).toBe(ACTIVATE_EXIT.health);
      expect((run.result as { message: string }).message).toBe(
        'health check failed: echo started; sleep 60: still running when the health timeout of 2s ran out; stopped it (1 attempt in 2s); output: "started"',
      );
      expect(await servedName(host)).toBe("web-v3");
    });

    it("once, with retry false: its first failure is final, whatever time is left", async () => {
      // (The host runs web-v3 since the test before.)
      const run = await activate(host, "web-v2", {
        healthChecks: [
          { run: "echo ok", timeout: 60 },
          { run: "echo 'not ready'; exit 3", timeout: 60, retry: false },
        ],
      });
      expect(run.code, JSON.stringify(run.result)).toBe(ACTIVATE_EXIT.health);
      expect((run.result as { message: string }).message).toBe(
        `health check failed: echo 'not ready'; exit 3: exit code 3 (1 attempt only: retry false); output: "not ready"`,
      );
      expect(await servedName(host)).toBe("web-v3");
    });
  });
});
