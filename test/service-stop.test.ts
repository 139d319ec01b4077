// The services end when asked to: `cache serve` and `dashboard`, run as a user runs them, stop
// on SIGINT, SIGTERM or SIGHUP (a closed terminal, or a supervisor's stop), close what they
// serve and exit 0, saying nothing of an interruption: being stopped is how a service ends.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, nixship } from "../support/cli.js";
import { writeDashboardFleet } from "../support/dashboard-store.js";

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-service-stop-"));
  const cache = join(work, "cache");
  await mkdir(cache);
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  await writeDashboardFleet(work, `file://${cache}`, { ssm: 1, agent: 0 });
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Starts `nixship ARGS`, waits for 'listening on URL', sends `signal`, and reports the end. */
async function stopWith(
  args: readonly string[],
  signal: NodeJS.Signals,
): Promise<{
  code: number | null;
  killedBy: NodeJS.Signals | null;
  stderr: string;
  stdout: string;
  url: string;
}> {
  const child: ChildProcess = spawn(process.execPath, [NIXSHIP_BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    cwd: work,
  });
  let stderr = "";
  let stdout = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  let url = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
    const m = /listening on (\S+)/.exec(stderr);
    if (m && url === "") {
      url = m[1] as string;
      // Served, then stopped.
      void fetch(url).then(
        () => child.kill(signal),
        () => child.kill(signal),
      );
    }
  });
  const end = await new Promise<{ code: number | null; killedBy: NodeJS.Signals | null }>(
    (resolve) => {
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      child.on("close", (code, killedBy) => {
        clearTimeout(timer);
        resolve({ code, killedBy });
      });
    },
  );
  return { ...end, stderr, stdout, url };
}

describe("a service stopped by a signal", () => {
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    it(`cache serve exits 0 on ${signal}, having served`, async () => {
      const run = await stopWith(
        ["cache", "serve", join(work, "cache"), "--listen", "127.0.0.1:0"],
        signal,
      );
      expect(run.url, run.stderr).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(run).toEqual({
        code: 0,
        killedBy: null,
        stderr: `listening on ${run.url}\n`,
        stdout: "",
        url: run.url,
      });
    });

    it(`dashboard exits 0 on ${signal}, having served`, async () => {
      const run = await stopWith(
        ["dashboard", "--fleet", join(work, "nixship.json"), "--listen", "127.0.0.1:0"],
        signal,
      );
      expect(run.url, run.stderr).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).not.toMatch(/interrupted|error/);
    });
  }
});

describe("a service started with --json", () => {
  it("cache serve prints the address it listens on (port 0: the one chosen) as JSON on stdout", async () => {
    const run = await stopWith(
      ["cache", "serve", join(work, "cache"), "--listen", "127.0.0.1:0", "--json"],
      "SIGTERM",
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.url).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(run.stdout).toBe(`${JSON.stringify({ listening: run.url })}\n`);
  });

  it("dashboard too", async () => {
    const run = await stopWith(
      ["dashboard", "--fleet", join(work, "nixship.json"), "--listen", "127.0.0.1:0", "--json"],
      "SIGTERM",
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.url).toMatch(/^http:\/\/127\.0\.0\.1:[1-9]\d*$/);
    expect(run.stdout).toBe(`${JSON.stringify({ listening: run.url })}\n`);
  });

  it("a usage error is the JSON error object on stdout", async () => {
    const r = await nixship(["cache", "serve", join(work, "cache"), "--json"]);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: "usage" } });
  });
});
