// runActivate's reading of what comes back over ssh. The remote end here is an `ssh` on PATH
// that prints what a broken or hostile host would (a shell that is not POSIX, a flood of
// output): what these tests check is nixship's reading of those bytes, not ssh itself.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PINNED_ACTIVATOR } from "../host/activation.js";
import {
  activateCommand,
  HELD_OUTPUT,
  runActivate,
  type SshTarget,
  sudoRefusal,
} from "./ssh-transport.js";

let dir: string;

/** A status result as activate.sh prints it. */
const STATUS = JSON.stringify({
  ok: true,
  command: "status",
  current: "/nix/store/00000000000000000000000000000000-s",
  booted: null,
  profile: "/nix/store/00000000000000000000000000000000-s",
  generation: 3,
  generations: [{ generation: 3, path: "/nix/store/00000000000000000000000000000000-s" }],
  pending: null,
  activation: null,
  secrets: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
});
let savedPath: string | undefined;

const target: SshTarget = {
  name: "web1",
  destination: "root@192.0.2.1",
  user: undefined,
  configFile: undefined,
  knownHosts: undefined,
};

/** Puts an `ssh` on PATH that runs `script` (sh) in place of the host. */
async function fakeSsh(script: string): Promise<void> {
  const ssh = join(dir, "ssh");
  await writeFile(ssh, `#!/bin/sh\ncat >/dev/null\n${script}\n`);
  await chmod(ssh, 0o755);
  process.env.PATH = `${dir}:${savedPath ?? ""}`;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-ssh-transport-"));
  savedPath = process.env.PATH;
});

afterEach(async () => {
  process.env.PATH = savedPath;
  await rm(dir, { recursive: true, force: true });
});

describe("runActivate", () => {
  it("names output that is not a result beside ssh's own words", async () => {
    await fakeSsh(
      `echo 'Welcome to web1'; echo 'fish: Unknown command: sh' >&2; echo 'set -e: not found'; exit 127`,
    );
    const run = await runActivate(target, ["switch"], { timeoutSeconds: 30 });
    expect(run.result).toBeUndefined();
    expect(run.failure).toBe(
      "ssh: fish: Unknown command: sh; web1: the activation script gave no JSON result; its last line: set -e: not found",
    );
  });

  it("says only what ssh said when nothing came back", async () => {
    await fakeSsh(
      `echo 'ssh: connect to host 192.0.2.1 port 22: Connection refused' >&2; exit 255`,
    );
    const run = await runActivate(target, ["switch"], { timeoutSeconds: 30 });
    expect(run.failure).toBe("ssh: connect to host 192.0.2.1 port 22: Connection refused");
  });

  it("says when output left open past ssh's exit was not read to its end", async () => {
    await fakeSsh("sleep 10 & exit 0");
    const run = await runActivate(target, ["status"], { timeoutSeconds: 30 });
    expect(run.result).toBeUndefined();
    expect(run.failure).toBe(`ssh exited with 0 and no result; ${HELD_OUTPUT}`);
  });

  it("keeps only the end of a flood of output, and still reads the result on its last line", async () => {
    // 8 MiB of noise before the result: the reader keeps a bounded tail.
    await fakeSsh(`head -c 8388608 /dev/zero | tr '\\0' 'x'; echo; echo '${STATUS}'`);
    const run = await runActivate(target, ["status"], { timeoutSeconds: 30 });
    expect(run.failure).toBe("");
    expect(run.result).toMatchObject({ ok: true, generation: 3 });
  });

  it.each([
    ["a number for a path", { current: 5 }, "current is not a store path or null"],
    ["a string for a number", { generation: "3" }, "generation is not a whole number or null"],
    [
      "a path outside the store",
      { generations: [{ generation: 1, path: "/etc/shadow" }] },
      "generations[0].path is not a store path",
    ],
    [
      "a date that is not a number",
      {
        activation: {
          command: "x",
          path: null,
          pid: 1,
          since: "yesterday",
          deadline: null,
          stale: false,
        },
      },
      "since is not a time in seconds or null",
    ],
    [
      "a huge message",
      { message: "x".repeat(5000), command: "abort", result: "unknown", exitCode: 7 },
      "message is longer than 4096 characters",
    ],
    [
      "pinned keys that are not texts",
      { pinned: { keys: [1], substituters: [] } },
      "pinned.keys[0] is not a short text",
    ],
    [
      "a pinnedActivator that is not true or false",
      { pinnedActivator: "yes" },
      "pinnedActivator is not true or false",
    ],
    [
      "an unknown command",
      { command: "format-disk" },
      "command is not one activate.sh answers with",
    ],
  ])("fails a host whose result has %s, naming what is wrong", async (_, change, problem) => {
    await fakeSsh(`printf '%s\\n' '${JSON.stringify({ ...JSON.parse(STATUS), ...change })}'`);
    const run = await runActivate(target, ["status"], { timeoutSeconds: 30 });
    expect(run.result).toBeUndefined();
    expect(run.failure).toBe(
      `ssh exited with 0 and no result; web1: the activation script's result is malformed: ${problem}`,
    );
  });

  it("strips control characters from what a host says", async () => {
    const forged = {
      ok: false,
      command: "abort",
      result: "unknown",
      exitCode: 7,
      message: "a\u001b[2J\rweb5 success\u0007",
    };
    await fakeSsh(`printf '%s\\n' '${JSON.stringify(forged)}'`);
    const run = await runActivate(target, ["abort"], { timeoutSeconds: 30 });
    expect(run.result).toMatchObject({ message: "a\ufffd[2J\ufffdweb5 success\ufffd" });
  });
});

describe("a pinned host reached through sudo", () => {
  it("runs exactly the sudo rule's command, its one variable on stdin", () => {
    const sudo = activateCommand({ sudo: true }, ["status", "--check-paths"], {
      NIXSHIP_CHECK_PATHS: "/nix/store/a\n/nix/store/b",
    });
    expect(sudo).toEqual({
      command: `sudo -n ${PINNED_ACTIVATOR} 'status' '--check-paths'`,
      input: "/nix/store/a\n/nix/store/b",
    });
    expect(activateCommand({ sudo: true }, ["confirm", "--token", "it's"]).command).toBe(
      `sudo -n ${PINNED_ACTIVATOR} 'confirm' '--token' 'it'\\''s'`,
    );
    expect(() =>
      activateCommand({ sudo: true }, ["activate"], { NIXSHIP_A: "1", NIXSHIP_B: "2" }),
    ).toThrow("at most one input variable");
    const piped = activateCommand({}, ["status"]);
    expect(piped.command).toBe("sh -s -- 'status'");
    expect(piped.input).toContain("activate.sh");
  });

  it("names sudo's refusal with its fix", async () => {
    expect(sudoRefusal("sudo: a password is required\n", { user: "deploy" })).toBe(
      `sudo: a password is required: deploy may not run ${PINNED_ACTIVATOR} through sudo without a password (set services.nixship-host.deployUser = "deploy" in the host's configuration)`,
    );
    expect(
      sudoRefusal(`sudo: ${PINNED_ACTIVATOR}: command not found\n`, { user: "deploy" }),
    ).toContain(
      "the host has no /run/current-system/sw/bin/nixship-activate (deploy it once as root",
    );
    expect(sudoRefusal("Connection closed\n", { user: "deploy" })).toBeUndefined();
    await fakeSsh(`echo 'sudo: a password is required' >&2; exit 1`);
    const run = await runActivate({ ...target, user: "deploy", sudo: true }, ["status"], {
      timeoutSeconds: 30,
    });
    expect(run.failure).toContain("deploy may not run");
  });
});
