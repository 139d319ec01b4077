// A dashboard that needs its token, in a real browser (Debian's Chromium through
// playwright-core): the 401 offers Basic auth as a challenge of its own, so Chromium asks for
// (here: is given) the user and password, and the page loads with the token as the password.
// A single header naming Bearer first left Chromium with no scheme it takes: no prompt, and a
// 401 whatever it was given.
import type { ChildProcess } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeStatus } from "../src/status/status-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { NIXSHIP_BIN } from "../support/cli.js";
import {
  hostRecord,
  startDashboardProcess,
  writeDashboardFleet,
} from "../support/dashboard-store.js";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TOKEN = "a-token-of-thirty-two-characters";

let dir: string;
let dashboard: ChildProcess | undefined;
let url: string;
let browser: Browser;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-dash-token-"));
  const cache = join(dir, "cache");
  const store = new FsStore(cache);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
  const { fleetFile } = await writeDashboardFleet(dir, `file://${cache}`, { ssm: 1, agent: 0 });
  await writeStatus(store, hostRecord("s0", "ssm"));
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, `${TOKEN}\n`);
  await chmod(tokenFile, 0o600);
  const started = await startDashboardProcess(NIXSHIP_BIN, [
    "--fleet",
    fleetFile,
    "--token-file",
    tokenFile,
  ]);
  dashboard = started.child;
  url = started.url;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  dashboard?.kill("SIGTERM");
  await rm(dir, { recursive: true, force: true });
});

describe("a dashboard with a token, in Chromium", () => {
  it("offers Basic and Bearer as challenges of their own", async () => {
    const r = await fetch(`${url}/`);
    expect(r.status).toBe(401);
    // fetch joins repeated headers with ", "; each scheme is a challenge of its own line.
    expect(r.headers.get("www-authenticate")).toBe(
      'Basic realm="nixship", charset="UTF-8", Bearer realm="nixship"',
    );
  });

  it("loads the page when the browser is given the token as the password", async () => {
    const context = await browser.newContext({
      httpCredentials: { username: "me", password: TOKEN },
    });
    try {
      const page = await context.newPage();
      const response = await page.goto(`${url}/`, { timeout: 15_000 });
      expect(response?.status()).toBe(200);
      await page.waitForSelector('tr[data-host="s0"]', { timeout: 15_000 });
    } finally {
      await context.close();
    }
  });

  it("stays shut to a browser given a wrong password", async () => {
    const context = await browser.newContext({
      httpCredentials: { username: "me", password: `${TOKEN}x` },
    });
    try {
      const page = await context.newPage();
      const response = await page.goto(`${url}/`, { timeout: 15_000 });
      expect(response?.status()).toBe(401);
    } finally {
      await context.close();
    }
  });
});
