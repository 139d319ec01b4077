// A system's own checks (nixship/health.json in its store path), read from a directory laid
// out as a system is.
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StorePath } from "../nix/store-path.js";
import { readSystemHealth, withSystemHealth } from "./system-health.js";

let system: string;

beforeEach(async () => {
  system = await mkdtemp(join(tmpdir(), "nixship-system-health-"));
});

afterEach(async () => {
  await rm(system, { recursive: true, force: true });
});

async function declare(body: string): Promise<void> {
  await mkdir(join(system, "nixship"), { recursive: true });
  await writeFile(join(system, "nixship", "health.json"), body);
}

const read = () => readSystemHealth(system as StorePath);

describe("readSystemHealth", () => {
  it("reads the checks a system declares, with the fleet file's defaults", async () => {
    await declare(
      JSON.stringify({
        http: [{ url: "http://{address}:9000/ready" }],
        commands: [{ run: "systemctl is-active myapp", timeout: 20 }],
      }),
    );
    expect(await read()).toEqual({
      http: [{ url: "http://{address}:9000/ready", expectStatus: 200, timeout: 5 }],
      commands: [{ run: "systemctl is-active myapp", timeout: 20 }],
    });
  });

  it("refuses an HTTP check of a host of the system's own choosing: it asks its own host", async () => {
    await declare(
      JSON.stringify({ http: [{ url: "http://{name}/ok" }, { url: "http://10.0.0.9/" }] }),
    );
    await expect(read()).rejects.toThrow(
      `${system}/nixship/health.json: http[1].url: http://10.0.0.9/ names a host of its own; a system's own HTTP checks ask the host they run on: its URL's host must be {address} or {name}`,
    );
  });

  it("finds none in a system without the file", async () => {
    expect(await read()).toBeUndefined();
  });

  it("refuses a malformed file, naming it and what is wrong", async () => {
    await declare(JSON.stringify({ commands: [{ timeout: 3 }] }));
    await expect(read()).rejects.toThrow(
      `${system}/nixship/health.json: commands[0].run: is required`,
    );
    await declare("{not json");
    await expect(read()).rejects.toThrow(`${system}/nixship/health.json`);
    await declare(JSON.stringify({ commands: [{ run: "x".repeat(70 * 1024) }] }));
    await expect(read()).rejects.toThrow(/bytes; a system's checks take at most 65536/);
    await rm(join(system, "nixship"), { recursive: true });
    await mkdir(join(system, "nixship", "health.json"), { recursive: true });
    await expect(read()).rejects.toThrow("health.json: not a regular file");
  });

  it("follows no link out of the file's place to a device", async () => {
    await mkdir(join(system, "nixship"));
    await symlink("/dev/zero", join(system, "nixship", "health.json"));
    await expect(read()).rejects.toThrow("not a regular file");
  });
});

describe("withSystemHealth", () => {
  it("runs the policy's checks, then the system's", () => {
    const policy = { http: [], commands: [{ run: "a", timeout: 1 }] };
    const own = {
      http: [{ url: "http://x/", expectStatus: 204, timeout: 2 }],
      commands: [{ run: "b", timeout: 3 }],
    };
    expect(withSystemHealth(policy, own)).toEqual({
      http: own.http,
      commands: [...policy.commands, ...own.commands],
    });
    expect(withSystemHealth(policy, undefined)).toBe(policy);
  });
});
