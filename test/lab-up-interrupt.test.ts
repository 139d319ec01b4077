// `lab up` interrupted while its hosts start: it stops between steps, takes down what it made
// (namespaces, bridge, processes, directory) and exits 130, so the same lab can be started
// again at once. A lab a kill left before any host ran is named as half made, with the fix; of
// two started at once under one name, one runs and the other is refused.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LAB_NETNS, labTag } from "../src/lab/layout.js";
import { NIXSHIP_BIN, nixship, runOk } from "../support/cli.js";

/** This test's own lab name, in a lab directory of its own. */
const LAB = "cut";
/** More hosts than lab up starts at once, so that some are still to start when it is stopped. */
const HOSTS = 12;

let work: string;
const labs = () => join(work, "labs");
const env = () => ({ NIXSHIP_LAB_DIR: labs() });

/** This lab's network namespaces, by the tag its directory gives them. */
async function ownNetns(): Promise<string[]> {
  const tag = labTag(join(labs(), LAB));
  return (await runOk("ip", ["netns", "list"]))
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((ns) => LAB_NETNS.exec(ns)?.[2] === tag);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-lab-interrupt-"));
});

afterAll(async () => {
  await nixship(["lab", "down", "--all"], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("lab up, interrupted", () => {
  it("takes down every host it started, exits 130, and the lab starts again", async () => {
    const child = spawn(
      process.execPath,
      [NIXSHIP_BIN, "lab", "up", String(HOSTS), "--name", LAB],
      {
        env: { ...process.env, ...env() },
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    const code = new Promise<number | null>((resolve) => child.on("close", resolve));
    const firstUp = new Promise<void>((resolve) => {
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        if (/ is up$/m.test(stderr)) resolve();
      });
    });
    await Promise.race([firstUp, code]);
    child.kill("SIGTERM");
    expect(await code, stderr).toBe(130);
    expect(stderr).toContain("lab up: interrupted (SIGTERM); nothing was left half done");
    // Stopped before the last host: the interrupt came while hosts were starting.
    expect(stderr.match(/ is up$/gm)?.length ?? 0).toBeLessThan(HOSTS);
    expect(await ownNetns()).toEqual([]);
    expect(await readdir(labs())).toEqual([]);

    const again = await nixship(["lab", "up", "1", "--name", LAB, "--json"], { env: env() });
    expect(again.code, again.stderr).toBe(0);
    expect(await ownNetns()).toHaveLength(1);
    const down = await nixship(["lab", "down", "--name", LAB], { env: env() });
    expect(down.code, down.stderr).toBe(0);
    expect(await ownNetns()).toEqual([]);
  });

  it("a lab killed before any host ran is named as such, with the command that clears it", async () => {
    // What lab up writes first, before it starts a host: what a kill -9 then leaves.
    await mkdir(join(labs(), LAB), { recursive: true });
    const pending = {
      version: 1,
      name: LAB,
      number: 250,
      createdAt: new Date().toISOString(),
      hosts: [],
    };
    await writeFile(join(labs(), LAB, "lab.json"), JSON.stringify(pending));
    const up = await nixship(["lab", "up", "1", "--name", LAB], { env: env() });
    expect(up.code).toBe(2);
    expect(up.stderr).toContain(
      `lab '${LAB}' has no host yet: another 'lab up' is starting it, or one was killed before any host ran`,
    );
    expect(up.stderr).toContain(`'nixship lab down --name ${LAB}' clears it`);
    const down = await nixship(["lab", "down", "--name", LAB], { env: env() });
    expect(down.code, down.stderr).toBe(0);
    const upAfter = await nixship(["lab", "up", "1", "--name", LAB], { env: env() });
    expect(upAfter.code, upAfter.stderr).toBe(0);
    await nixship(["lab", "down", "--name", LAB], { env: env() });
  });

  it("two lab up of one name at once: one starts the lab, the other is refused and takes nothing down", async () => {
    const both = await Promise.all(
      [1, 2].map(() => nixship(["lab", "up", "3", "--name", LAB], { env: env() })),
    );
    expect(both.map((r) => r.code).sort()).toEqual([0, 2]);
    const refused = both.find((r) => r.code === 2);
    expect(refused?.stderr).toMatch(
      /lab 'cut' (has a directory but no state yet|has no host yet|already exists)/,
    );
    const list = await nixship(["lab", "list", "--name", LAB, "--json"], { env: env() });
    const hosts = (JSON.parse(list.stdout) as { hosts: { running: boolean }[] }).hosts;
    expect(hosts.map((h) => h.running)).toEqual([true, true, true]);
    expect(await ownNetns()).toHaveLength(3);
    await nixship(["lab", "down", "--name", LAB], { env: env() });
    expect(await ownNetns()).toEqual([]);
  });
});
