// Reboots through pull agents, on a lab whose hosts count boots: the release's entry
// asks for a reboot, the agent sets the next boot and reboots its host (the example system's
// systemctl, the lab host's power button), the lab boots the host and starts its agent again,
// and that agent judges the boot (what booted, the checks) and reports after the boot.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checksFor } from "../src/release/release.js";
import { nixship } from "../support/cli.js";
import {
  type AgentLab,
  agentLog,
  channelRelease,
  deployViaAgent,
  labAgents,
  record,
  served,
  setSystems,
  startAgentLab,
  summaryOf,
  waitFor,
} from "./support/agent-lab.js";
import { servedAfterBoot } from "./support/lab-deploy.js";

let lab: AgentLab;

/** The system a host booted (its /run/booted-system), by example name. */
async function booted(host: string): Promise<string> {
  const r = await nixship(["lab", "exec", host, "--", "readlink", "/run/booted-system"], {
    env: lab.env,
  });
  return r.stdout.trim().replace(/^.*-example-web-system-/, "");
}

beforeAll(async () => {
  lab = await startAgentLab("ar", {
    hosts: 2,
    releases: { offlineTimeout: 90 },
    labUpArgs: ["--boot-counting", "2"],
  });
  await setSystems(lab, "web-v1");
  const r = await deployViaAgent(lab);
  expect(r.code, r.stderr).toBe(0);
  // Each host boots what it runs; the lab starts its agent again.
  for (const host of ["ar1", "ar2"]) {
    const up = await nixship(["lab", "reboot", host, "--name", "ar"], { env: lab.env });
    expect(up.code, up.stderr).toBe(0);
    expect(await booted(host)).toBe("v1");
  }
});

afterAll(async () => {
  await lab?.down();
});

describe("deploy --reboot through agents", () => {
  it("the agent reboots into a new kernel and reports after the boot", async () => {
    await setSystems(lab, "web-v4", ["ar1"]);
    const r = await deployViaAgent(lab, "--on", "ar1", "--reboot", "auto");
    expect(r.code, r.stderr).toBe(0);
    expect(summaryOf(r).ar1).toMatchObject({ status: "activated" });
    expect(await booted("ar1")).toBe("v4");
    expect(await served(lab, "ar1")).toBe("web-v4");
    expect(await record(lab, "ar1")).toMatchObject({ state: "success", phase: null });
  });

  it("an agent stopped after it confirmed the boot, before it saved that, reports the boot kept", async () => {
    // ar1 runs web-v4, booted and confirmed (the test before). Its agent's state goes back to
    // what it held before the judgement's end was saved: the release applying, its boot pending
    // under a token that confirm-boot already took (none is pending on the host now).
    await labAgents(lab, "stop", "ar1");
    const file = join(lab.dir, "hosts", "ar1", "agent", "state", "state.json");
    const state = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
    const before = await record(lab, "ar1");
    expect(before).toMatchObject({ state: "success" });
    const { release } = await channelRelease(lab);
    const now = new Date().toISOString();
    state.applying = {
      seq: state.lastSeq,
      digest: state.lastDigest,
      path: before?.current,
      startedAt: now,
      reboot: {
        token: "judged-before-the-stop",
        bootId: "a-boot-before-this-one",
        since: now,
        timeout: 600,
        rollback: true,
        generation: null,
        previous: before?.previous ?? null,
        checks: checksFor(release, undefined),
      },
    };
    await writeFile(file, JSON.stringify(state), { mode: 0o600 });
    await labAgents(lab, "start", "ar1");
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const now = JSON.parse(await readFile(file, "utf8")) as { applying: unknown };
      if (now.applying === null) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const log = await agentLog(lab, "ar1");
    expect(JSON.parse(await readFile(file, "utf8")).applying, log).toBeNull();
    expect(await record(lab, "ar1"), log).toMatchObject({
      state: "success",
      current: before?.current,
    });
    expect(log).not.toContain("no reboot is pending");
  });

  it("a check that fails after the boot: the agent reports it, and the host reboots back", async () => {
    await setSystems(lab, "web-v4-broken", ["ar2"]);
    const r = await deployViaAgent(lab, "--on", "ar2", "--reboot", "auto");
    expect(r.code).toBe(1);
    expect(summaryOf(r).ar2).toMatchObject({
      status: "failed",
      phase: "health",
      rolledBack: true,
    });
    // Judged after the boot into it: its check failed there, and the host goes back.
    expect(String(summaryOf(r).ar2?.message)).toMatch(
      /status 500.*back on the previous generation, rebooting into it/,
    );
    // The host reboots into web-v1 after the agent's report; its agent comes back with it.
    const end = Date.now() + 60_000;
    while ((await booted("ar2")) !== "v1" && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(await booted("ar2")).toBe("v1");
    expect(await servedAfterBoot(lab, "ar2")).toBe("web-v1");
    // The deploy pointed the channel back at what ar2 ran (the last confirmed system): its
    // agent reports it runs that.
    await waitFor(
      lab,
      "ar2",
      (rec) => rec.state === "success" && (rec.current ?? "").endsWith("-example-web-system-v1"),
    );
  });
});
