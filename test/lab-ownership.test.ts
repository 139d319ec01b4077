// A lab is owned by its lab directory: two labs of one name in two NIXSHIP_LAB_DIR directories
// run side by side, and taking one down (by name, by --all, or from leftovers once its state
// file is gone) leaves the other serving: its hosts answer over ssh and its anchor runs.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { anchorPids } from "../src/lab/lab-anchor.js";
import { labTag } from "../src/lab/layout.js";
import { type CliRun, nixship, run, runOk } from "../support/cli.js";

/** The name both labs have: this test's own, so no other test's lab is ever touched. */
const LAB = "own";

interface UpJson {
  readonly number: number;
  readonly hosts: { name: string; netns: string; pid: number }[];
  readonly files: { sshConfig: string };
}

let work: string;
const dirA = () => join(work, "a");
const dirB = () => join(work, "b");
const env = (dir: string) => ({ NIXSHIP_LAB_DIR: dir });

async function up(dir: string, count = 2): Promise<UpJson> {
  const r = await nixship(["lab", "up", String(count), "--name", LAB, "--json"], { env: env(dir) });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as UpJson;
}

function ssh(lab: UpJson, host: string): Promise<CliRun> {
  return run("ssh", [
    "-F",
    lab.files.sshConfig,
    host,
    "cat /etc/nix/nix.conf >/dev/null && echo up",
  ]);
}

/** Lab A still serves: each host's sshd runs, answers over ssh, and A's anchor runs. */
async function expectServing(lab: UpJson): Promise<void> {
  for (const host of lab.hosts) {
    const r = await ssh(lab, host.name);
    expect(r.code, `${host.name}: ${r.stderr}`).toBe(0);
    expect(r.stdout.trim()).toBe("up");
  }
  const list = await nixship(["lab", "list", "--json"], { env: env(dirA()) });
  const hosts = (JSON.parse(list.stdout) as { hosts: { running: boolean }[] }).hosts;
  expect(hosts.map((h) => h.running)).toEqual(lab.hosts.map(() => true));
  const tag = labTag(join(dirA(), LAB));
  expect(await anchorPids({ name: LAB, number: lab.number, tag })).toHaveLength(1);
}

async function netnsList(): Promise<string[]> {
  return (await runOk("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0] ?? "");
}

let a: UpJson;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-lab-ownership-"));
  a = await up(dirA());
});

afterAll(async () => {
  for (const dir of [dirA(), dirB()]) await nixship(["lab", "down", "--all"], { env: env(dir) });
  await rm(work, { recursive: true, force: true });
});

describe("two labs of one name in two lab directories", () => {
  it("run side by side with namespaces of their own, and one goes down by name alone", async () => {
    const b = await up(dirB());
    expect(b.number).not.toBe(a.number);
    const names = [...a.hosts, ...b.hosts].map((h) => h.netns);
    expect(new Set(names).size).toBe(4);
    await expectServing(a);
    const down = await nixship(["lab", "down", "--name", LAB], { env: env(dirB()) });
    expect(down.code, down.stderr).toBe(0);
    expect(down.stderr).toContain(`removed: ${LAB}`);
    const left = await netnsList();
    for (const h of b.hosts) expect(left).not.toContain(h.netns);
    for (const h of a.hosts) expect(left).toContain(h.netns);
    await expectServing(a);
  });

  it("one whose state file is gone (a crash) goes down from its leftovers, alone", async () => {
    const b = await up(dirB(), 1);
    await rm(join(dirB(), LAB, "lab.json"));
    const down = await nixship(["lab", "down", "--name", LAB], { env: env(dirB()) });
    expect(down.code, down.stderr).toBe(0);
    expect(await netnsList()).not.toContain(b.hosts[0]?.netns);
    const bridges = await runOk("ip", ["-o", "link", "show"]);
    expect(bridges).not.toMatch(new RegExp(`^\\d+: nxs${b.number}[:@]`, "m"));
    await expectServing(a);
  });

  it("lab down --all takes down the labs of its own directory only", async () => {
    const b = await up(dirB(), 1);
    const down = await nixship(["lab", "down", "--all"], { env: env(dirB()) });
    expect(down.code, down.stderr).toBe(0);
    expect(await netnsList()).not.toContain(b.hosts[0]?.netns);
    expect(await readFile(join(dirA(), LAB, "lab.json"), "utf8")).toContain(`"name": "${LAB}"`);
    await expectServing(a);
  });
});
