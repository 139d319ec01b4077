// Drift in `nixship status`, from the status records alone: a host whose record says
// it runs a system nixship did not leave on it is marked drifted, in the table and in --json,
// and is not in step; a host behind its channel, or one that went back after a failure, is not.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";

const V1 = "/nix/store/11111111111111111111111111111111-nixos-system-web";
const V2 = "/nix/store/22222222222222222222222222222222-nixos-system-web";
const HAND = "/nix/store/99999999999999999999999999999999-nixos-system-web";
let work: string;
let fleetFile: string;

function record(host: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    version: 1,
    host,
    mode: "ssm",
    channel: null,
    seq: null,
    desired: V2,
    current: V2,
    generation: 3,
    previous: V1,
    state: "success",
    phase: null,
    error: null,
    rolledBack: null,
    startedAt: "2026-11-25T03:00:00.000Z",
    updatedAt: "2026-11-25T03:00:05.000Z",
    ...fields,
  });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-status-drift-"));
  const cache = join(work, "cache");
  const dir = join(cache, "status", "hosts");
  await mkdir(dir, { recursive: true });
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  const put = (host: string, body: string) => writeFile(join(dir, `${host}.json`), body);
  await put("same", record("same"));
  await put("back", record("back", { current: V1 }));
  await put("rebuilt", record("rebuilt", { current: HAND }));
  await put(
    "failed",
    record("failed", {
      state: "failed",
      desired: HAND,
      current: V2,
      previous: V2,
      rolledBack: true,
    }),
  );
  const hosts = Object.fromEntries(
    ["same", "back", "rebuilt", "failed"].map((h, i) => [
      h,
      { delivery: "ssm", instanceId: `i-0123456789abcdef${i}`, system: V2 },
    ]),
  );
  fleetFile = join(work, "nixship.json");
  const publicKeys = [`status-drift-1:${Buffer.alloc(32, 1).toString("base64")}`];
  await writeFile(
    fleetFile,
    JSON.stringify({ cache: { url: `file://${cache}`, publicKeys }, hosts }),
  );
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("status: drift", () => {
  it("--json: a 'drift' on the host that runs what nixship did not leave on it, and exit 1", async () => {
    const r = await nixship(["status", "--fleet", fleetFile, "--json"]);
    expect(r.code, r.stderr).toBe(1);
    const rows = (JSON.parse(r.stdout) as { hosts: Record<string, unknown>[] }).hosts;
    const byHost = Object.fromEntries(rows.map((row) => [row.host, row]));
    expect(byHost.rebuilt).toMatchObject({
      inStep: false,
      drift: { running: HAND, expected: [V2, V1] },
    });
    for (const host of ["same", "back"]) {
      expect(byHost[host]).toMatchObject({ inStep: true });
      expect(byHost[host]).not.toHaveProperty("drift");
    }
    // Failed (not in step for that), but back on the system it ran before: no drift.
    expect(byHost.failed).toMatchObject({ inStep: false, state: "failed" });
    expect(byHost.failed).not.toHaveProperty("drift");
    const inStep = await nixship(["status", "--fleet", fleetFile, "--on", "same,back", "--json"]);
    expect(inStep.code, inStep.stderr).toBe(0);
  });

  it("the table: STATE drifting, and what runs against what nixship left", async () => {
    const r = await nixship(["status", "--fleet", fleetFile, "--on", "rebuilt"]);
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n")[1]).toMatch(
      /^rebuilt\s+ssm\s+nixos-system-web\s+3\s+drifting\s+runs 99999999-nixos-system-web, not what nixship left on it \(22222222-nixos-system-web or 11111111-nixos-system-web\); reported /,
    );
  });
});
