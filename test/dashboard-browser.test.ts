// The dashboard in a real browser: Debian's Chromium through playwright-core, against
// `nixship dashboard` over a lab of three hosts with real agents and real rollouts. The host
// table shows every host with its system and state; a status marker written while the page is
// open appears without a reload; filters work; a planted <script> stays text; a host switched
// by hand (`nixship lab exec`) shows as drifting in the page, in `nixship status` and in
// /metrics. A page of another site that reaches the dashboard by DNS rebinding (Chromium told
// that attacker.example is 127.0.0.1) gets no fleet data, and a release a bucket writer signed
// with a key of its own is marked in the page as untrusted, never shown as the current release.
// Screenshots of the main pages go to test-results/dashboard/.
import type { ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSecretKey } from "../src/nix/keys.js";
import { publishRelease } from "../src/release/release-store.js";
import { readStatus, writeStatus } from "../src/status/status-store.js";
import { NIXSHIP_BIN, nixship } from "../support/cli.js";
import { startDashboardProcess } from "../support/dashboard-store.js";
import {
  type AgentLab,
  CHANNEL,
  deployViaAgent,
  setSystems,
  startAgentLab,
  waitFor,
  withStore,
} from "./support/agent-lab.js";
import { buildExampleSystems } from "./support/example-systems.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = fileURLToPath(new URL("../test-results/dashboard/", import.meta.url));
const HOSTS = ["dw1", "dw2", "dw3"];
/** How long the page may take to show what the store says (a filter's fetch, a poll) under load. */
const SETTLES = { timeout: 15_000, interval: 100 };
const PLANTED = `<script>window.__planted = 1</script><img src=x onerror="window.__planted = 2">`;

let lab: AgentLab;
let systems: Awaited<ReturnType<typeof buildExampleSystems>>;
let dashboard: ChildProcess | undefined;
let url: string;
let browser: Browser;
let page: Page;

async function deploy(system: "web-v1" | "web-v2" | "web-v3"): Promise<void> {
  await setSystems(lab, system);
  const r = await deployViaAgent(lab);
  expect(r.code, r.stderr).toBe(0);
}

async function startDashboard(): Promise<string> {
  const started = await startDashboardProcess(
    NIXSHIP_BIN,
    ["--fleet", lab.fleetFile, "--interval", "0.5"],
    lab.env,
  );
  dashboard = started.child;
  return started.url;
}

/** Each host row's state class, as the page shows it now. */
function rowStates(): Promise<Record<string, string>> {
  return page.evaluate(
    `Object.fromEntries([...document.querySelectorAll("table.hosts tbody tr")].map((tr) => [tr.dataset.host, tr.className]))`,
  );
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const family = parsePrometheusTextFormat(text).find((f) => f.name === name);
  const sample = family?.metrics.find((m) =>
    Object.entries(labels).every(([k, v]) => m.labels?.[k] === v),
  );
  return Number(sample?.value ?? Number.NaN);
}

beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  systems = await buildExampleSystems();
  lab = await startAgentLab("dw", {
    hosts: HOSTS.length,
    releases: { offlineTimeout: 90 },
    policy: { canary: 1, parallel: 2, confirmTimeout: 30 },
  });
  await deploy("web-v1");
  url = await startDashboard();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // DNS rebinding, as a browser sees it: a name of another site that resolves to loopback.
    args: ["--no-sandbox", "--host-resolver-rules=MAP attacker.example 127.0.0.1"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
});

afterAll(async () => {
  await browser?.close();
  dashboard?.kill("SIGTERM");
  await lab?.down();
});

describe("the dashboard in Chromium", () => {
  it("shows every host of a lab rollout with its system and state, and the rollout wave by wave", async () => {
    await page.goto(url);
    const states = await rowStates();
    expect(states).toEqual({ dw1: "in-step", dw2: "in-step", dw3: "in-step" });
    const v1 = systems["web-v1"];
    const base = v1.slice(v1.lastIndexOf("/") + 1);
    for (const host of HOSTS) {
      const cell = page.locator(`tr[data-host="${host}"] td:nth-child(5)`);
      await expect
        .poll(() => cell.textContent(), SETTLES)
        .toBe(`${base.slice(33)} ${base.slice(0, 8)}`);
    }
    await page.screenshot({ path: join(SHOTS, "hosts.png"), fullPage: true });

    await page.goto(`${url}/rollout`);
    const waves = await page.locator("section.wave h2").allTextContents();
    expect(waves).toEqual(["Wave 1 (canary)", "Wave 2 (main)"]);
    expect(await page.locator("section.wave tbody tr.confirmed").count()).toBe(3);
    await page.screenshot({ path: join(SHOTS, "rollout.png"), fullPage: true });

    await page.goto(`${url}/releases`);
    expect(await page.locator("h2").first().textContent()).toBe("Channel lab");
    await page.screenshot({ path: join(SHOTS, "releases.png"), fullPage: true });
  });

  it("its times tick in the page, between polls: a stuck rollout never reads '0 s ago'", async () => {
    const tab = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    try {
      await tab.goto(`${url}/rollout`);
      const started = tab.locator(".rollout-head time[data-ago]").first();
      const before = (await started.textContent()) ?? "";
      expect(before).toMatch(/ ago$/);
      // The page's clock moves 10 minutes on; the server's does not: only the page's script can
      // say so (a page the server renders again says what its own clock says).
      await tab.clock.install();
      await tab.clock.fastForward("10:00");
      await expect
        .poll(async () => (await started.textContent()) ?? "", SETTLES)
        .toMatch(/^(1\d|[2-9]\d|\d{3,}) min ago$|^\d+ h ago$/);
    } finally {
      await tab.close();
    }
  });

  it("a status marker written while the page is open appears within 3 s, without a reload; a planted <script> stays text", async () => {
    await page.goto(url);
    let navigations = 0;
    page.on("framenavigated", () => navigations++);
    const record = await withStore(lab, (store) => readStatus(store, "dw2"));
    if (record === undefined) throw new Error("dw2 never reported");
    const written = Date.now();
    await withStore(lab, (store) =>
      writeStatus(store, {
        ...record,
        state: "failed",
        phase: "health",
        error: PLANTED,
        rolledBack: false,
        updatedAt: new Date().toISOString(),
      }),
    );
    await page.locator('tr[data-host="dw2"].failed').waitFor({ timeout: 3000 });
    const seconds = (Date.now() - written) / 1000;
    expect(seconds).toBeLessThan(3);
    expect(navigations).toBe(0);
    expect(await page.locator('tr[data-host="dw2"] .error').textContent()).toBe(PLANTED);
    expect(await page.evaluate("window.__planted")).toBeUndefined();
    expect(await page.locator('tr[data-host="dw2"] script, tr[data-host="dw2"] img').count()).toBe(
      0,
    );
    await page.goto(`${url}/hosts/dw2`);
    expect(await page.locator(".facts .error").textContent()).toBe(PLANTED);
    expect(await page.evaluate("window.__planted")).toBeUndefined();
    // Put the host's record back as its agent left it.
    await withStore(lab, (store) => writeStatus(store, record));
  });

  it("filters by tag and state and searches by name, with labelled controls, as they change", async () => {
    await page.goto(url);
    await page.getByLabel("Tag", { exact: true }).selectOption("db");
    await expect.poll(async () => Object.keys(await rowStates()), SETTLES).toEqual(["dw2"]);
    await page.getByLabel("Tag", { exact: true }).selectOption("");
    await page.getByLabel("Name", { exact: true }).fill("W3");
    await expect.poll(async () => Object.keys(await rowStates()), SETTLES).toEqual(["dw3"]);
    expect(page.url()).toBe(`${url}/?q=W3`);
    // The field keeps the keyboard's focus while the table changes under it.
    expect(await page.evaluate("document.activeElement.id")).toBe("f-q");
    await page.getByLabel("Name", { exact: true }).fill("");
    await page.getByLabel("State", { exact: true }).selectOption("in-step");
    await expect.poll(async () => Object.keys(await rowStates()).length, SETTLES).toBe(3);
    await page.getByLabel("State", { exact: true }).selectOption("failed");
    await expect.poll(async () => Object.keys(await rowStates()), SETTLES).toEqual([]);
  });

  it("is usable with the keyboard: a skip link, the sections, the labelled filters, the hosts", async () => {
    await page.goto(url);
    const focused = async () =>
      page.evaluate<string>(
        `(() => { const e = document.activeElement; return e.id || e.getAttribute("aria-label") || e.textContent.trim(); })()`,
      );
    const order: string[] = [];
    for (let i = 0; i < 9; i++) {
      await page.keyboard.press("Tab");
      order.push(await focused());
    }
    expect(order).toEqual([
      "Skip to content",
      "Hosts",
      "Releases",
      "Rollout",
      "f-tag",
      "f-state",
      "f-q",
      "Filter",
      // The summary's first badge, then the table's first host.
      "3 in-step",
    ]);
    await page.keyboard.press("Tab");
    expect(await focused()).toBe("dw1");
    await page.keyboard.press("Enter");
    await page.waitForURL(`${url}/hosts/dw1`);
    expect(await page.locator("h1").textContent()).toBe("Host dw1");
  });

  it("keeps the keyboard's place on a host's link when the table changes under it", async () => {
    await page.goto(url);
    await page.locator('tr[data-host="dw1"] a[href="/hosts/dw1"]').focus();
    const live = page.locator("#live");
    const version = await live.getAttribute("data-version");
    // A new record of dw1: the page swaps in the live part the server renders for it.
    const record = await withStore(lab, (store) => readStatus(store, "dw1"));
    if (record === undefined) throw new Error("dw1 never reported");
    await withStore(lab, (store) =>
      writeStatus(store, { ...record, updatedAt: new Date().toISOString() }),
    );
    await expect.poll(() => live.getAttribute("data-version"), SETTLES).not.toBe(version);
    expect(await page.evaluate(`document.activeElement.getAttribute("href")`)).toBe("/hosts/dw1");
    await page.keyboard.press("Enter");
    await page.waitForURL(`${url}/hosts/dw1`);
    await withStore(lab, (store) => writeStatus(store, record));
  });

  it("a host switched by hand drifts: in the page, in `nixship status` and in /metrics", async () => {
    await deploy("web-v2");
    await deploy("web-v3");
    await page.goto(url);
    const v1 = systems["web-v1"];
    const hand = await nixship(
      [
        ...["lab", "exec", "dw3", "--", "sh", "-c"],
        `nix-env -p /nix/var/nix/profiles/system --set ${v1} && ${v1}/bin/switch-to-configuration switch`,
      ],
      { env: lab.env },
    );
    expect(hand.code, hand.stderr).toBe(0);
    // The agent reports what the host runs with its next heartbeat (at most 10 s on a lab).
    await waitFor(lab, "dw3", (r) => r.current === v1, 60);
    await page.locator('tr[data-host="dw3"].drifting').waitFor({ timeout: 10_000 });
    expect(await page.locator('tr[data-host="dw3"] .drift-mark').textContent()).toBe("drift");
    expect(await rowStates()).toEqual({ dw1: "in-step", dw2: "in-step", dw3: "drifting" });
    await page.screenshot({ path: join(SHOTS, "hosts-drift.png"), fullPage: true });

    const status = await nixship(["status", "--fleet", lab.fleetFile, "--json"], { env: lab.env });
    expect(status.code).toBe(1);
    const rows = (JSON.parse(status.stdout) as { hosts: { host: string; drift?: unknown }[] })
      .hosts;
    expect(rows.find((r) => r.host === "dw3")?.drift).toEqual({
      running: v1,
      // What nixship left there: the system it was given. The agent's record of the switch by
      // hand is folded like every record (status/next-record.ts): the system it ran before is
      // the one it left, web-v3, not the web-v2 of the record before.
      expected: [systems["web-v3"]],
    });
    expect(rows.filter((r) => r.drift !== undefined).map((r) => r.host)).toEqual(["dw3"]);
    await expect.poll(() => metric("nixship_hosts_drifting"), SETTLES).toBe(1);
    expect(await metric("nixship_hosts", { state: "drifting", mode: "agent" })).toBe(1);

    await page.goto(`${url}/hosts/dw3`);
    expect(await page.locator("h1").textContent()).toBe("Host dw3");
    await page.screenshot({ path: join(SHOTS, "host.png"), fullPage: true });
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await phone.goto(url);
    const width = await phone.evaluate("document.documentElement.scrollWidth");
    expect(width).toBeLessThanOrEqual(390);
    await phone.screenshot({ path: join(SHOTS, "hosts-phone.png"), fullPage: true });
    await phone.close();
  });

  it("a page of another site that reaches the dashboard by DNS rebinding reads nothing of the fleet", async () => {
    const port = new URL(url).port;
    const rebound = await browser.newPage();
    try {
      const response = await rebound.goto(`http://attacker.example:${port}/`);
      expect(response?.status()).toBe(421);
      const text = await rebound.locator("body").textContent();
      expect(text).toMatch(/answers only as http:\/\/127\.0\.0\.1:\d+ or http:\/\/localhost/);
      // What the attacker's script would try: same-origin for it, so it could read the answers.
      const answers = await rebound.evaluate<Record<string, [number, string]>>(
        `(async () => {
          const out = {};
          for (const path of ["/api/hosts", "/metrics", "/api/releases", "/api/events"]) {
            const res = await fetch(path);
            out[path] = [res.status, (await res.text()).slice(0, 2000)];
          }
          return out;
        })()`,
      );
      for (const [path, [status, body]] of Object.entries(answers)) {
        expect(status, path).toBe(421);
        for (const leak of HOSTS) expect(body, path).not.toContain(leak);
        expect(body, path).not.toContain("nixship_hosts");
      }
    } finally {
      await rebound.close();
    }
  });

  it("a release signed by a key the fleet does not trust is marked in the page, not shown as current", async () => {
    // A bucket writer signs a release with its own key and points the channel at it.
    const forged = await withStore(lab, (store) =>
      publishRelease(store, {
        channel: CHANNEL,
        hosts: Object.fromEntries(HOSTS.map((h) => [h, { path: systems["web-v1"] }])) as never,
        kind: "deploy",
        action: "switch",
        health: { http: [], commands: [] },
        confirmTimeout: 30,
        key: generateSecretKey("forger-1"),
      }),
    );
    const seq = forged.release.seq;
    await page.goto(`${url}/releases`);
    const alert = page.locator(".untrusted-current");
    await alert.waitFor({ timeout: 15_000 });
    expect(await alert.getAttribute("role")).toBe("alert");
    expect(await alert.textContent()).toMatch(
      new RegExp(
        `names release ${seq}, which no key the fleet trusts signed: agents will not follow it\\. .*signed by key 'forger-1', which is not trusted`,
      ),
    );
    expect(await page.locator("p", { hasText: "Current release" }).count()).toBe(0);
    const row = page.locator(`tr[data-seq="${seq}"]`);
    expect(await row.getAttribute("class")).toBe("current untrusted");
    expect(await row.locator("th .badge").textContent()).toBe("current, untrusted");
    expect(await row.locator("td .badge.trust").textContent()).toBe("untrusted");
    // The release before it stays marked as signed by the fleet's key.
    expect(
      await page
        .locator(`tr[data-seq="${seq - 1}"] td code`)
        .first()
        .textContent(),
    ).toMatch(/\S/);
    await page.screenshot({ path: join(SHOTS, "releases-forged.png"), fullPage: true });

    await page.goto(`${url}/releases/${CHANNEL}/${seq}`);
    expect(await page.locator(".untrusted-release").textContent()).toContain("forger-1");

    const api = (await (await fetch(`${url}/api/releases`)).json()) as {
      channels: { channel: string; currentTrust: { status: string } }[];
    };
    expect(api.channels.find((c) => c.channel === CHANNEL)?.currentTrust.status).toBe("untrusted");
  });
});
