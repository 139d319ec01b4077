// A reader slower than the command: nixship's output to a pipe reaches it whole before the
// process exits. A pipe takes 64 KiB at once and Node queues the rest; the executable used to
// exit 2 s after the command ended, which cut a large --json short under exit code 0 when its
// reader (a loaded CI runner) had not taken it yet (release-memory's 44 MiB in one CI run).
// Now it waits for its readers (10 minutes at most), then exits.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN } from "../support/cli.js";

const HOSTS = 2000;
const CACHE_KEY = "cache-1:0Ujr1Ehz3TNAD5PjMYqBH4qkTjBqcnGXN0B1GAsHB1I=";
let work: string;
let outputs: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-slow-reader-"));
  const hosts: Record<string, unknown> = {};
  for (let i = 0; i < HOSTS; i++) {
    hosts[`web${i}`] = {
      instance_id: `i-${(0x10000000 + i).toString(16).padStart(17, "0")}`,
      private_ip: `10.42.${i >> 8}.${i & 255}`,
      public_ip: "",
      ssh_host_public_key: "",
      tags: { Name: `web${i}`, "nixship-host": `web${i}` },
    };
  }
  const string = (value: string) => ({ sensitive: false, type: "string", value });
  outputs = join(work, "outputs.json");
  await writeFile(
    outputs,
    JSON.stringify({
      cache_url: string("s3://nixship-cache?region=eu-west-1"),
      region: string("eu-west-1"),
      ssm_document_name: string("nixship-activate"),
      hosts: { sensitive: false, type: ["object", {}], value: hosts },
    }),
  );
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("a reader that takes the output later than the command ends", () => {
  it("gets all of it: the fleet of 2,000 hosts, hundreds of KiB, parses whole", async () => {
    const child = spawn(
      process.execPath,
      [
        NIXSHIP_BIN,
        ...["fleet", "from-terraform", outputs, "--via", "ssm", "--system", ".#{name}"],
        ...["--cache-key", CACHE_KEY],
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stderr = "";
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    // Read nothing for 8 s: the command ends within about one on a quiet machine, and the old
    // executable exited 2 s after that, with what the pipe had not taken lost.
    child.stdout.pause();
    await new Promise((resolve) => setTimeout(resolve, 8000));
    const chunks: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => chunks.push(d));
    const ended = new Promise((resolve) => child.stdout.on("end", resolve));
    child.stdout.resume();
    // Bounded: a pipe whose end never comes is said, with what came through it.
    const late = new Promise((resolve) => setTimeout(resolve, 30_000, "late"));
    const read = await Promise.race([ended, late]);
    const text = Buffer.concat(chunks).toString("utf8");
    expect(
      read,
      `the output had not ended 30 s after reading began (${text.length} bytes read)`,
    ).not.toBe("late");
    expect(await exited, stderr).toBe(0);
    expect(text.length).toBeGreaterThan(200 * 1024);
    const fleet = JSON.parse(text) as { hosts: Record<string, unknown> };
    expect(Object.keys(fleet.hosts)).toHaveLength(HOSTS);
  }, 120_000);
});
