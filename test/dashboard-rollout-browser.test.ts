// The dashboard in Chromium during real ssh rollouts on a lab of three hosts: a host
// whose health check waits on a file the test creates shows as applying in the host table
// while its rollout holds it (also on its first deploy, before it has a record), then as in
// step once it ends; the rollout page lists the host
// skipped as up to date and the wave not started yet, and after a canary fails and stops the
// rollout, the host it never started. Screenshots go to test-results/dashboard/.
import type { ChildProcess } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN } from "../support/cli.js";
import { startDashboardProcess } from "../support/dashboard-store.js";
import { setExampleSystems } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = fileURLToPath(new URL("../test-results/dashboard/", import.meta.url));
/** The file each host's health check waits for (its own /run). */
const GO = "/run/dra-go";
/** How long the page may take to show what the store says (a poll, a render) under load. */
const SETTLES = { timeout: 15_000, interval: 100 };
/** How long a deploy may take to reach its held host (a build, a push, a canary before it). */
const REACHES = { timeout: 90_000 };

let lab: SshLab;
let dashboard: ChildProcess | undefined;
let url: string;
let browser: Browser;
let hosts: Page;
let rollout: Page;

/** Lets HOST's health check pass (or, with `go` false, holds it until the file comes). */
async function release(host: string, go = true): Promise<void> {
  const r = await lab.nixship(["lab", "exec", host, "--", go ? "touch" : "rm", "-f", GO]);
  expect(r.code, r.stderr).toBe(0);
}

/** The state and the text of each row of the host table, as the page shows them now. */
function hostRows(): Promise<Record<string, { state: string; result: string }>> {
  return hosts.evaluate(
    `Object.fromEntries([...document.querySelectorAll("table.hosts tbody tr")].map((tr) => [tr.dataset.host, { state: tr.className, result: tr.querySelector("td:nth-child(7)").textContent.trim() }]))`,
  );
}

/** Each wave's hosts and the skipped ones, as the rollout page lists them: host → state text. */
function rolloutRows(): Promise<Record<string, Record<string, string>>> {
  return rollout.evaluate(
    `Object.fromEntries([...document.querySelectorAll("section.wave")].map((s) => [s.querySelector("h2").textContent, Object.fromEntries([...s.querySelectorAll("tbody tr")].map((tr) => [tr.dataset.host, tr.querySelector("td").textContent.trim()]))]))`,
  );
}

beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  lab = await startSshLab("dra", 3);
  // One canary, then one host a wave; each host healthy once its GO file exists (retried
  // within 120 s, the bound of a held host).
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    policy: { health: { http: unknown[] } };
  };
  doc.policy = {
    ...doc.policy,
    canary: 1,
    parallel: 1,
    health: { ...doc.policy.health, commands: [{ run: `test -e ${GO}`, timeout: 120 }] },
  } as typeof doc.policy;
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
  const started = await startDashboardProcess(NIXSHIP_BIN, [
    "--fleet",
    lab.fleetFile,
    "--interval",
    "0.5",
  ]);
  dashboard = started.child;
  url = started.url;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  hosts = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  rollout = await browser.newPage({ viewport: { width: 1280, height: 800 } });
}, 240_000);

afterAll(async () => {
  await browser?.close();
  dashboard?.kill("SIGTERM");
  await lab?.down();
});

describe("the dashboard in Chromium during ssh rollouts", () => {
  it("shows a host on its first deploy as applying (it has no record yet), then in step", async () => {
    await hosts.goto(url);
    expect(await hostRows()).toMatchObject({
      dra1: { state: "unreported" },
      dra2: { state: "unreported" },
      dra3: { state: "unreported" },
    });
    await release("dra2");
    await release("dra3");
    await setExampleSystems(lab.fleetFile, { dra1: "web-v1", dra2: "web-v1", dra3: "web-v1" });
    const deploy = lab.deploy("--json");
    try {
      await expect
        .poll(async () => (await hostRows()).dra1, REACHES)
        .toMatchObject({
          state: "applying",
          result: expect.stringMatching(/^applying \(health\) /),
        });
      // dra2 waits for its wave: behind the rollout until it runs its system.
      expect((await hostRows()).dra2?.state).toBe("behind");
    } finally {
      await release("dra1");
      const done = await deploy;
      expect(done.code, done.stderr).toBe(0);
    }
    await expect
      .poll(async () => Object.values(await hostRows()).map((r) => r.state), SETTLES)
      .toEqual(["in-step", "in-step", "in-step"]);
  });

  it("shows an ssh host as applying while its rollout holds it, then in step; the rollout page lists the skipped host and the wave not started", async () => {
    await hosts.goto(url);
    expect(await hostRows()).toMatchObject({
      dra1: { state: "in-step" },
      dra2: { state: "in-step" },
      dra3: { state: "in-step" },
    });
    // dra1 (the canary) is held in its health check; dra2 is up to date; dra3 waits for wave 2.
    await release("dra1", false);
    await setExampleSystems(lab.fleetFile, { dra1: "web-v2", dra3: "web-v2" });
    const deploy = lab.deploy("--json");
    try {
      // As a user looks: the host table, open before the deploy, changes by itself.
      await hosts.locator('tr[data-host="dra1"].applying').waitFor(REACHES);
      // It may show its switch first; held, it ends in its health checks.
      await expect
        .poll(async () => (await hostRows()).dra1?.result, SETTLES)
        .toMatch(/^applying \(health\) /);
      const held = await hostRows();
      expect(held.dra2?.state).toBe("in-step");
      expect(held.dra3?.state).not.toBe("applying");
      await hosts.screenshot({ path: join(SHOTS, "hosts-applying.png"), fullPage: true });

      await rollout.goto(`${url}/rollout`);
      expect(await rollout.locator(".rollout-head .badge").textContent()).toBe("running");
      // The host's time is the rollout's last write (nothing changes while it is held), not
      // the end of the deploy before it.
      expect(
        await hosts.locator('tr[data-host="dra1"] td:nth-child(7) time').getAttribute("datetime"),
      ).toBe(await rollout.locator(".rollout-head time").nth(1).getAttribute("datetime"));
      expect(await rolloutRows()).toEqual({
        "Wave 1 (canary)": { dra1: "health" },
        "Wave 2 (main)": { dra3: "pending" },
        Skipped: { dra2: "up to date" },
      });
      await rollout.screenshot({ path: join(SHOTS, "rollout-running.png"), fullPage: true });
    } finally {
      // Whatever the page showed, the deploy ends before the next test starts one.
      await release("dra1");
      const done = await deploy;
      expect(done.code, done.stderr).toBe(0);
    }
    // Without a reload: the rows change as the records do.
    await expect
      .poll(() => hostRows(), SETTLES)
      .toMatchObject({
        dra1: { state: "in-step", result: expect.stringMatching(/^success /) },
        dra2: { state: "in-step" },
        dra3: { state: "in-step", result: expect.stringMatching(/^success /) },
      });
    await expect
      .poll(() => rolloutRows(), SETTLES)
      .toEqual({
        "Wave 1 (canary)": { dra1: "confirmed" },
        "Wave 2 (main)": { dra3: "confirmed" },
        Skipped: { dra2: "up to date" },
      });
    // The record names its hosts confirmed before its last write names its end: the page may
    // show the one before the other, and changes by itself.
    await expect
      .poll(() => rollout.locator(".rollout-head .badge").textContent(), SETTLES)
      .toBe("succeeded");
  });

  it("lists the host a rollout never started after its canary failed, and the skipped one", async () => {
    await setExampleSystems(lab.fleetFile, { dra1: "web-broken", dra3: "web-v3" });
    const r = await lab.deploy("--json");
    expect(r.code).toBe(1);
    await rollout.goto(`${url}/rollout`);
    await expect
      .poll(() => rollout.locator(".rollout-head .badge").textContent(), SETTLES)
      .toBe("failed");
    expect(await rolloutRows()).toEqual({
      "Wave 1 (canary)": { dra1: "rolled-back" },
      "Wave 2 (main)": { dra3: "not started" },
      Skipped: { dra2: "up to date" },
    });
    expect(await rollout.locator("p.problem", { hasText: "Stopped:" }).count()).toBe(1);
    await rollout.screenshot({ path: join(SHOTS, "rollout-stopped.png"), fullPage: true });
  });
});
