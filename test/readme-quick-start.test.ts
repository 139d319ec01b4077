// The README's quick start, run as written: its block of lab lines (doctor, lab up, deploy with
// the lab's cache served to the hosts, status, lab down), whole, in bash, on a machine where
// another lab is already up, so that the quick start's lab is not lab number 1 and nothing may
// assume its addresses. (Its nix.conf step is test/doctor.test.ts's; the tests' NIX_CONFIG holds
// the same settings, and the machine's /etc/nix is not the test's to write.)
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, nixship, run } from "../support/cli.js";

const README = new URL("../README.md", import.meta.url);
/** The lab the quick start makes (its default name), and another one up before it. */
const QUICK = "lab";
const OTHER = "qsother";

let work: string;
let env: NodeJS.ProcessEnv;

/** The lines of the quick start's ```sh block that holds `# Try a rollout on local hosts first`. */
async function labLines(): Promise<string[]> {
  const lines = (await readFile(README, "utf8")).split("\n");
  const at = lines.findIndex((l) => l.startsWith("# Try a rollout on local hosts first"));
  expect(at).toBeGreaterThan(0);
  const start = lines.slice(0, at).lastIndexOf("```sh") + 1;
  const end = lines.findIndex((l, i) => i > at && l === "```");
  expect(start).toBeGreaterThan(0);
  expect(end).toBeGreaterThan(at);
  const block = lines.slice(start, end);
  // The block is the lab's: it checks the local Nix first, and ends with the lab taken down.
  expect(block[0]).toMatch(/^nixship doctor\b/);
  expect(block.at(-1)).toBe("nixship lab down");
  return block;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-quick-start-"));
  env = { NIXSHIP_LAB_DIR: join(work, "labs") };
  const other = await nixship(["lab", "up", "1", "--name", OTHER], { env });
  expect(other.code, other.stderr).toBe(0);
});

afterAll(async () => {
  for (const name of [QUICK, OTHER]) await nixship(["lab", "down", "--name", name], { env });
  await rm(work, { recursive: true, force: true });
});

describe("the README's quick start", () => {
  it("deploys to its lab and takes it down, with another lab up", async () => {
    const lines = await labLines();
    const script = [
      "set -eu",
      `nixship() { node ${NIXSHIP_BIN} "$@"; }`,
      // As written: its lab directory is $NIXSHIP_LAB_DIR's, the test's own.
      ...lines,
    ].join("\n");
    const r = await run("bash", ["-c", script], { env });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    // doctor passed the local Nix, the deploy activated every host, and status (run before lab
    // down) shows each in step.
    expect(r.stdout).toContain("nothing blocks a deploy");
    expect(r.stderr).toContain("3 activated, 0 failed");
    for (const host of [`${QUICK}1`, `${QUICK}2`, `${QUICK}3`]) {
      expect(r.stdout).toMatch(
        new RegExp(`^${host}\\s+ssh\\s+example-web-system-v1\\s+1\\s+in-step`, "m"),
      );
    }
    const list = await nixship(["lab", "list", "--json"], { env });
    const labs = (JSON.parse(list.stdout) as { hosts: { lab: string }[] }).hosts.map((h) => h.lab);
    expect(labs).toEqual([OTHER]);
  });
});
