// docs/pinned-hosts.md's three commands, run as written: a lab of pinned
// hosts (`lab up --pinned`), a deploy that reaches them as the deploy user through sudo and
// realises only what the lab's key signed, and a plan that names their pinned trust.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, nixship, run } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";

const DOC = new URL("../docs/pinned-hosts.md", import.meta.url);
/** The lab the block makes. */
const NAME = "pinned";

let work: string;
let env: NodeJS.ProcessEnv;

/** The lines between the doc's markers of the pinned lab, inside its ```sh block. */
async function docLines(): Promise<string[]> {
  const lines = (await readFile(DOC, "utf8")).split("\n");
  const start = lines.findIndex((l) => l.startsWith("<!-- pinned lab:"));
  const end = lines.indexOf("<!-- end of the pinned lab -->");
  expect(start).toBeGreaterThan(0);
  expect(end).toBeGreaterThan(start);
  const block = lines.slice(start + 1, end);
  expect(block[0]).toBe("```sh");
  expect(block.at(-1)).toBe("```");
  return block.slice(1, -1);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-pinned-lab-"));
  env = { NIXSHIP_LAB_DIR: join(work, "labs"), NIX_CONFIG: TEST_NIX_CONFIG };
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", NAME], { env });
  await rm(work, { recursive: true, force: true });
});

describe("pinned hosts on the lab, as docs/pinned-hosts.md says", () => {
  it("three commands: a pinned lab, a deploy through sudo as deploy, a plan naming the trust", async () => {
    const lines = await docLines();
    // The lab up, the lab's directory, the deploy, the plan.
    expect(lines).toHaveLength(4);
    const script = [
      "set -eu",
      `nixship() { node ${NIXSHIP_BIN} "$@"; }`,
      // As written: its lab directory is $NIXSHIP_LAB_DIR's, the test's own.
      ...lines,
    ].join("\n");
    const r = await run("bash", ["-c", script], { env });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).toContain("2 activated, 0 failed");
    expect(r.stdout).toMatch(
      /^ {2}pinned1, pinned2: pinned: nixship-activate, keys nixship-lab-pinned-1$/m,
    );
    // Every activation came as deploy, through sudo: root never logged in to a host.
    for (const host of ["pinned1", "pinned2"]) {
      const log = await readFile(
        join(env.NIXSHIP_LAB_DIR as string, NAME, "hosts", host, "sshd.log"),
        "utf8",
      );
      expect(log).toMatch(/Accepted publickey for deploy /);
      expect(log).not.toMatch(/Accepted publickey for root /);
    }
    // web-v2 runs on both, from the lab's flake of pinned systems.
    const status = await nixship(
      ["status", "--fleet", join(env.NIXSHIP_LAB_DIR as string, NAME, "nixship.json"), "--json"],
      { env },
    );
    const rows = (JSON.parse(status.stdout) as { hosts: { host: string; current: string }[] })
      .hosts;
    expect(rows.map((h) => h.current.replace(/^.*-example-web-system-/, ""))).toEqual(["v2", "v2"]);
  }, 300_000);

  it("refuses --pinned with what it cannot take, before anything starts", async () => {
    const r = await nixship(["lab", "up", "1", "--pinned", "--agents", "--name", "pinx"], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--pinned installs the lab's own pinned systems.*leave out --agents/);
  });
});
