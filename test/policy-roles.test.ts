// Policy per role on a lab of three ssh hosts: two of role @api, whose policy has an
// HTTP check, and one @worker, whose policy has a command check and no HTTP check. Each role
// runs only its own checks: the worker runs a system whose GET /health answers 500, which the
// API's check would fail, and deploys; an API host given that system fails in health. The plan
// shows each host's checks. A system that declares its own check (nixship/health.json in its
// store path) has it run after its role's, and fails until the check passes.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runOk } from "../support/cli.js";
import { deployEvents, servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const LAB = "pr";
let lab: SshLab;
let fleetFile: string;
const nixship = (args: readonly string[]) => lab.nixship(args);
const deploy = (...extra: string[]) => lab.deploy("--json", ...extra);
type Outcome = { status: string; phase?: string; message?: string };
const outcomes = (r: Parameters<typeof summaryOf>[0]) => summaryOf(r) as Record<string, Outcome>;

const API_CHECK = { url: "http://{address}/health", expectStatus: 200, timeout: 3 };
const WORKER_CHECK = { run: "test -s /run/current-system/nixos-version", timeout: 3 };

beforeAll(async () => {
  lab = await startSshLab(LAB, 3);
  fleetFile = lab.fleetFile;
  const doc = JSON.parse(await readFile(fleetFile, "utf8"));
  doc.policy = { canary: 0 };
  doc.policies = {
    "@api": { health: { http: [API_CHECK] } },
    "@worker": { health: { commands: [WORKER_CHECK] } },
  };
  doc.hosts[`${LAB}1`].tags = ["api"];
  doc.hosts[`${LAB}2`].tags = ["api"];
  doc.hosts[`${LAB}3`].tags = ["worker"];
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
});

afterAll(async () => {
  await lab?.down();
});

describe("a fleet of two roles, each with its own checks", () => {
  it("the plan shows each host's checks", async () => {
    await setExampleSystems(fleetFile, {
      [`${LAB}1`]: "web-v1",
      [`${LAB}2`]: "web-v1",
      [`${LAB}3`]: "web-broken",
    });
    const json = await nixship(["plan", "--fleet", fleetFile, "--json"]);
    expect(json.code, json.stderr).toBe(0);
    const checks = Object.fromEntries(
      (JSON.parse(json.stdout) as { hosts: { host: string; checks: unknown }[] }).hosts.map((h) => [
        h.host,
        h.checks,
      ]),
    );
    expect(checks).toEqual({
      [`${LAB}1`]: { http: [API_CHECK], commands: [] },
      [`${LAB}2`]: { http: [API_CHECK], commands: [] },
      [`${LAB}3`]: { http: [], commands: [WORKER_CHECK] },
    });
    const text = await nixship(["plan", "--fleet", fleetFile]);
    expect(text.stdout).toContain(
      `checks:\n  ${LAB}1, ${LAB}2: GET http://{address}/health answers 200 within 3s\n  ${LAB}3: \`test -s /run/current-system/nixos-version\` exits 0 within 3s`,
    );
  });

  it("each role runs only its own checks", async () => {
    // The worker's system answers GET /health with 500: the API's check would fail it.
    const r = await deploy();
    expect(r.code, r.stderr).toBe(0);
    expect(Object.values(outcomes(r)).map((o) => o.status)).toEqual([
      "activated",
      "activated",
      "activated",
    ]);
    expect(await servedBy(lab.info, `${LAB}3`)).toBe("web-broken");
    // On an API host, the same system fails the API's check.
    await setExampleSystems(fleetFile, { [`${LAB}2`]: "web-broken" });
    const api = await deploy("--on", `${LAB}2`);
    expect(api.code).toBe(1);
    expect(outcomes(api)[`${LAB}2`]).toMatchObject({ status: "failed", phase: "health" });
    expect(outcomes(api)[`${LAB}2`]?.message).toContain("/health");
    expect(await servedBy(lab.info, `${LAB}2`)).toBe("web-v1");
  });

  it("a system's own check runs after its role's, and holds the deploy until it passes", async () => {
    await setExampleSystems(fleetFile, { [`${LAB}3`]: "web-checked" });
    const plan = await nixship(["plan", "--fleet", fleetFile, "--on", `${LAB}3`, "--json"]);
    expect((JSON.parse(plan.stdout) as { hosts: { checks: unknown }[] }).hosts[0]?.checks).toEqual({
      http: [],
      commands: [WORKER_CHECK, { run: "test -e /run/web-checked.ready", timeout: 2 }],
    });
    const failed = await deploy("--on", `${LAB}3`);
    expect(failed.code).toBe(1);
    expect(outcomes(failed)[`${LAB}3`]).toMatchObject({ status: "failed", phase: "health" });
    expect(outcomes(failed)[`${LAB}3`]?.message).toContain("test -e /run/web-checked.ready");
    expect(await servedBy(lab.info, `${LAB}3`)).toBe("web-broken");
    await runOk("ssh", [
      "-F",
      join(lab.info.dir, "ssh_config"),
      "-o",
      "ControlPath=none",
      `${LAB}3`,
      "touch /run/web-checked.ready",
    ]);
    const passed = await deploy("--on", `${LAB}3`);
    expect(passed.code, passed.stderr).toBe(0);
    expect(await servedBy(lab.info, `${LAB}3`)).toBe("web-checked");
  });

  it("each role's canaries go first, in the waves plan --json shows and the deploy runs", async () => {
    // canary 1 from the fleet's policy, and again in both roles': one canary of each role.
    const doc = JSON.parse(await readFile(fleetFile, "utf8"));
    doc.policy = { canary: 1, parallel: 2 };
    doc.policies["@api"].canary = 1;
    doc.policies["@worker"].canary = 1;
    // An entry of one host's own (a timeout, as init --from deploy-rs writes for a node's)
    // tunes that host and leaves it in its role: it takes no canary of its own.
    doc.policies[`${LAB}2`] = { activationTimeout: 300 };
    await writeFile(fleetFile, JSON.stringify(doc, null, 2));
    await setExampleSystems(fleetFile, {
      [`${LAB}1`]: "web-v2",
      [`${LAB}2`]: "web-v2",
      [`${LAB}3`]: "web-v2",
    });
    const plan = await nixship(["plan", "--fleet", fleetFile, "--json"]);
    expect(plan.code, plan.stderr).toBe(0);
    const waves = (JSON.parse(plan.stdout) as { waves: unknown[] }).waves;
    expect(waves).toEqual([
      { wave: 1, kind: "canary", hosts: [`${LAB}1`, `${LAB}3`] },
      { wave: 2, kind: "main", hosts: [`${LAB}2`] },
    ]);
    const text = await nixship(["plan", "--fleet", fleetFile]);
    // Each role's own canary, named by its role.
    expect(text.stdout).toContain(
      `waves:\n  1 (canary): each role's own: @api: ${LAB}1; @worker: ${LAB}3\n  2: ${LAB}2`,
    );
    expect(text.stdout).toContain(
      "  no new wave once a host fails, or a canary does (--max-failures 0)",
    );
    // The wave flags a deploy takes, plan takes too: its waves are the deploy's.
    const flagged = await nixship([
      "plan",
      "--fleet",
      fleetFile,
      "--json",
      "--parallel",
      "1",
      "--canary",
      "0",
      "--max-failures",
      "2",
    ]);
    expect(flagged.code, flagged.stderr).toBe(0);
    expect(JSON.parse(flagged.stdout)).toMatchObject({
      waves: [
        { wave: 1, kind: "main", hosts: [`${LAB}1`, `${LAB}3`] },
        { wave: 2, kind: "main", hosts: [`${LAB}2`] },
      ],
      maxFailures: 2,
    });
    const r = await deploy();
    expect(r.code, r.stderr).toBe(0);
    const ran = deployEvents(r)
      .filter((e) => e.type === "wave-start")
      .map((e) => ({ wave: e.wave, kind: e.kind, hosts: e.hosts }));
    expect(ran).toEqual(waves);
  });
});
