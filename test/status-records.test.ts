// Status records in the store are believed only as far as they check: a record at
// one host's key that names another, one far larger than a record, one that is not JSON and
// one with a date that is none each fail their own host only; escape sequences and line breaks
// in what a record says never reach the terminal; every other host is shown as it reported.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";

const SYSTEM = "/nix/store/6jw91l3wjqa85c5n7z3hsz1c903jifh8-example-web-system-v1";
let work: string;
let fleetFile: string;

function record(host: string, fields: Record<string, unknown> = {}): string {
  return JSON.stringify({
    version: 1,
    host,
    mode: "ssh",
    channel: null,
    seq: null,
    desired: SYSTEM,
    current: SYSTEM,
    generation: 3,
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
  work = await mkdtemp(join(tmpdir(), "nixship-status-records-"));
  const cache = join(work, "cache");
  const dir = join(cache, "status", "hosts");
  await mkdir(dir, { recursive: true });
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  const put = (host: string, body: string | Buffer) => writeFile(join(dir, `${host}.json`), body);
  await put("a1", record("a2", { generation: 99 }));
  await put("a2", record("a2"));
  await put("a3", Buffer.alloc(40 * 1024 * 1024, 0x20));
  await put("a4", "this is not JSON");
  await put(
    "a5",
    record("a5", {
      state: "failed",
      error: "health\u001b[2J\u001b[H\ra6 success\nforged line\u0007",
      rolledBack: true,
    }),
  );
  await put("a6", record("a6", { updatedAt: "yesterday" }));
  const hosts = Object.fromEntries(
    ["a1", "a2", "a3", "a4", "a5", "a6"].map((h, i) => [
      h,
      { address: `192.0.2.${i + 1}`, system: SYSTEM },
    ]),
  );
  fleetFile = join(work, "nixship.json");
  const publicKeys = [`status-records-1:${Buffer.alloc(32, 1).toString("base64")}`];
  await writeFile(
    fleetFile,
    JSON.stringify({ cache: { url: `file://${cache}`, publicKeys }, hosts }),
  );
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("status --stored over hostile records", () => {
  it("shows every other host as it reported, and each bad record as its own host's problem", async () => {
    const r = await nixship(["status", "--fleet", fleetFile, "--stored", "--json"]);
    expect(r.code, r.stderr).toBe(1);
    const rows = (
      JSON.parse(r.stdout) as {
        hosts: {
          host: string;
          inStep: boolean;
          unreadable?: string;
          generation?: number;
          error?: string;
        }[];
      }
    ).hosts;
    const byHost = Object.fromEntries(rows.map((row) => [row.host, row]));
    expect(rows.map((row) => row.host)).toEqual(["a1", "a2", "a3", "a4", "a5", "a6"]);
    expect(byHost.a2).toMatchObject({ inStep: true, generation: 3 });
    expect(byHost.a1?.unreadable).toMatch(
      /status\/hosts\/a1\.json: the record names host 'a2', not a1$/,
    );
    expect(byHost.a3?.unreadable).toMatch(/status\/hosts\/a3\.json is 41943040 bytes/);
    expect(byHost.a4?.unreadable).toMatch(/status\/hosts\/a4\.json: not JSON/);
    expect(byHost.a6?.unreadable).toMatch(/"updatedAt" is not a date: "yesterday"/);
    for (const host of ["a1", "a3", "a4", "a6"]) expect(byHost[host]?.inStep).toBe(false);
    expect(byHost.a5?.error).toBe("health\ufffd[2J\ufffd[H\ufffda6 success\nforged line\ufffd");
  });

  it("prints no control character and no forged line on the terminal", async () => {
    const r = await nixship(["status", "--fleet", fleetFile, "--stored"]);
    expect(r.code).toBe(1);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: what must not be printed
    expect(r.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    const lines = r.stdout.trim().split("\n");
    expect(lines).toHaveLength(7);
    expect(lines.filter((l) => /^a6\s/.test(l))).toHaveLength(1);
    expect(lines.find((l) => l.startsWith("a6"))).toMatch(/unreadable/);
    expect(lines.find((l) => l.startsWith("a5"))).toMatch(
      /rolled-back\s+health.*a6 success; forged line/,
    );
    expect(lines.find((l) => l.startsWith("a2"))).toMatch(
      /a2\s+ssh\s+example-web-system-v1\s+3\s+in-step/,
    );
  });
});
