// Hostile and broken hosts: one that never answers, one that floods its stderr,
// one that answers with malformed fields, one whose answer is huge. `status`, `plan` and
// `deploy` each end within their stated deadline (a status query: 60 s) plus a few seconds,
// with the deployer's memory bounded, report each of those hosts' problems as that host's
// alone (never "bug in nixship"), and deploy the healthy host. The two that answer, but not
// with a status, are no outage: the deploy fails them even with --skip-unreachable (and counts
// them against --max-failures), while the two that do not answer are skipped. The lab's hosts
// get a forced command in their authorized_keys, so they answer every ssh command so.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOST_SSHD_DIR } from "../src/lab/ssh-files.js";
import { NIXSHIP_BIN, run, runOk } from "../support/cli.js";
import { deployEvents, type LabInfo, labDeployArgs } from "./support/lab-deploy.js";

const LAB = "hh";
/** `status` asks each host for at most this long (STATUS_TIMEOUT in delivery/ssh.ts, as set). */
const STATUS_DEADLINE = 20;
/** What a command may take past its deadline: ssh's shutdown, Node's exit. */
const GRACE = 15;
/** What status and plan say of hh2…hh5. */
const EXPECTED_PROBLEMS = [
  `no answer within ${STATUS_DEADLINE}s`,
  `no answer within ${STATUS_DEADLINE}s`,
  `ssh exited with 0 and no result; ${LAB}4: the activation script's result is malformed: current is not a store path or null`,
  // The answer's last line, cut: the reader keeps a bounded tail of it.
  expect.stringMatching(
    new RegExp(
      `^ssh exited with 0 and no result; ${LAB}5: the activation script gave no JSON result; its last line: x{100,500}…?$`,
    ),
  ),
];
let work: string;
let lab: LabInfo;
let fleetFile: string;
const env = () => ({
  NIXSHIP_LAB_DIR: join(work, "labs"),
  NIXSHIP_STATUS_TIMEOUT: String(STATUS_DEADLINE),
});

/** Runs nixship under GNU time: its exit code, output, wall seconds and peak RSS in MB. */
async function timed(args: readonly string[]) {
  const rusage = join(work, `rusage-${args[0]}`);
  const started = performance.now();
  const r = await run(
    "/usr/bin/time",
    ["-f", "%M", "-o", rusage, process.execPath, NIXSHIP_BIN, ...args],
    { env: env() },
  );
  const seconds = (performance.now() - started) / 1000;
  const rssMb = Number((await runOk("tail", ["-n", "1", rusage])).trim()) / 1024;
  return { ...r, seconds, rssMb };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-hostile-hosts-"));
  const up = await run(process.execPath, [NIXSHIP_BIN, "lab", "up", "5", "--name", LAB, "--json"], {
    env: env(),
  });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as LabInfo;
  fleetFile = join(lab.dir, "nixship.json");
  const force = async (host: string, command: string) => {
    const keys = `${HOST_SSHD_DIR}/authorized_keys`;
    await runOk("ssh", [
      "-F",
      join(lab.dir, "ssh_config"),
      "-o",
      "ControlPath=none",
      host,
      `sed -i 's|^|command="${command}" |' ${keys}`,
    ]);
  };
  await force(`${LAB}2`, "sleep 1000");
  // (\\& is an & to sed.)
  await force(`${LAB}3`, "head -c 67108864 /dev/zero >\\&2; sleep 1000");
  // A status answer of the right shape with fields of the wrong types, and 64 MB of answer
  // with no newline: each from a script in the host's own sshd directory.
  const malformed = JSON.stringify({
    ok: true,
    command: "status",
    current: 5,
    booted: null,
    profile: "/etc/shadow",
    generation: "3",
    generations: [],
    pending: null,
    activation: null,
    secrets: "0".repeat(64),
  });
  await script(`${LAB}4`, "malformed.sh", `cat >/dev/null; printf '%s\\n' '${malformed}'`);
  await force(`${LAB}4`, `sh ${HOST_SSHD_DIR}/malformed.sh`);
  await script(`${LAB}5`, "huge.sh", "cat >/dev/null; head -c 67108864 /dev/zero | tr '\\0' x");
  await force(`${LAB}5`, `sh ${HOST_SSHD_DIR}/huge.sh`);
});

/** Writes a script to the host's sshd directory (private to the host's mount namespace). */
async function script(host: string, name: string, body: string): Promise<void> {
  const r = await run(
    "ssh",
    [
      "-F",
      join(lab.dir, "ssh_config"),
      "-o",
      "ControlPath=none",
      host,
      `cat > ${HOST_SSHD_DIR}/${name}`,
    ],
    { input: Buffer.from(`${body}\n`) },
  );
  expect(r.code, r.stderr).toBe(0);
}

afterAll(async () => {
  await run(process.execPath, [NIXSHIP_BIN, "lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("hosts that never answer, flood stderr, answer malformed fields or a huge answer", () => {
  it("status, plan and deploy end within their deadline, in bounded memory, and the healthy host deploys", async () => {
    const [status, plan, deploy] = await Promise.all([
      timed(["status", "--fleet", fleetFile, "--json"]),
      timed(["plan", "--fleet", fleetFile, "--json"]),
      timed(
        labDeployArgs(
          lab,
          fleetFile,
          join(lab.dir, "cache.sec"),
          "--skip-unreachable",
          // hh4 and hh5 fail before any wave: with no more than 2 failures allowed, hh1 deploys.
          "--max-failures",
          "2",
          "--json",
        ),
      ),
    ]);
    for (const [name, r] of Object.entries({ status, plan, deploy })) {
      expect(r.seconds, `${name} took ${r.seconds.toFixed(1)} s`).toBeLessThan(
        STATUS_DEADLINE + GRACE,
      );
      expect(r.rssMb, `${name} peaked at ${r.rssMb.toFixed(0)} MB`).toBeLessThan(300);
      expect(r.stderr).not.toMatch(/bug in nixship/);
    }
    const rows = (
      JSON.parse(status.stdout) as {
        hosts: { host: string; reachable: boolean; error?: string; answerUnreadable?: true }[];
      }
    ).hosts;
    expect(rows.map((h) => [h.host, h.reachable, h.answerUnreadable ?? false])).toEqual([
      [`${LAB}1`, true, false],
      [`${LAB}2`, false, false],
      [`${LAB}3`, false, false],
      [`${LAB}4`, false, true],
      [`${LAB}5`, false, true],
    ]);
    const problems = rows.slice(1).map((row) => row.error);
    expect(problems).toEqual(EXPECTED_PROBLEMS);
    expect(status.code).toBe(1);
    const summary = deployEvents(deploy).find((e) => e.type === "summary") as unknown as {
      results: { host: string; outcome: { status: string; message?: string } }[];
    };
    expect(
      summary.results.map((h) => [h.host, h.outcome.status]),
      JSON.stringify(summary.results),
    ).toEqual([
      [`${LAB}1`, "activated"],
      [`${LAB}2`, "skipped"],
      [`${LAB}3`, "skipped"],
      [`${LAB}4`, "failed"],
      [`${LAB}5`, "failed"],
    ]);
    expect(summary.results.slice(3).map((h) => h.outcome.message)).toEqual(
      EXPECTED_PROBLEMS.slice(2).map((problem) =>
        typeof problem === "string"
          ? `it answered, but not with a status: ${problem}`
          : expect.stringMatching(
              /^it answered, but not with a status: ssh exited with 0 and no result; /,
            ),
      ),
    );
    expect(deploy.code).toBe(1);
    const planned = JSON.parse(plan.stdout) as {
      hosts: { host: string; action: string; error?: string; answerUnreadable?: true }[];
    };
    expect(planned.hosts.map((h) => [h.host, h.action, h.answerUnreadable ?? false])).toEqual([
      [`${LAB}1`, "activate", false],
      [`${LAB}2`, "unreachable", false],
      [`${LAB}3`, "unreachable", false],
      [`${LAB}4`, "unreachable", true],
      [`${LAB}5`, "unreachable", true],
    ]);
    expect(planned.hosts.slice(1).map((row) => row.error)).toEqual(EXPECTED_PROBLEMS);
  });
});
