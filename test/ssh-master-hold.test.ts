// Holding an ssh master alive past its ControlPersist time (src/delivery/ssh-mux.ts's
// holdMaster, which the bound's pool uses for masters waiting for their host's wave): a real
// OpenSSH master to a lab host, with a ControlPersist of 2 s.
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { holdMaster } from "../src/delivery/ssh-mux.js";
import { run } from "../support/cli.js";
import { processAlive } from "./support/process-alive.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let dir: string;

beforeAll(async () => {
  lab = await startSshLab("olh", 1);
  // Short: a socket path holds at most 107 bytes.
  dir = await mkdtemp("/tmp/olh-");
}, 120_000);

afterAll(async () => {
  await lab?.down();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const ssh = (...args: string[]) =>
  run("ssh", ["-F", join(lab.info.dir, "ssh_config"), "-o", `ControlPath=${dir}/m`, ...args]);

/** The master's pid, as `ssh -O check` says it ("Master running (pid=N)"). */
async function masterPid(): Promise<number> {
  const r = await ssh("-O", "check", "olh1");
  const pid = Number(/pid=(\d+)/.exec(r.stderr)?.[1]);
  expect(pid, r.stderr).toBeGreaterThan(0);
  return pid;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("holdMaster", () => {
  it("keeps an idle master past its ControlPersist time, and lets it end once let go", async () => {
    const started = await ssh(
      "-o",
      "ControlMaster=yes",
      "-o",
      "ControlPersist=2",
      "-N",
      "-f",
      "olh1",
    );
    expect(started.code, started.stderr).toBe(0);
    let ended = false;
    const hold = await holdMaster(`${dir}/m`, () => {
      ended = true;
    });
    expect(hold).toBeDefined();
    const pid = await masterPid();
    // Three times its ControlPersist, idle: held, it is still there (asked of the kernel: a
    // check over the socket would use it).
    await sleep(6000);
    expect(processAlive(pid)).toBe(true);
    hold?.close();
    // Let go, it ends ControlPersist later (waited for within 20 s).
    const deadline = Date.now() + 20_000;
    while (processAlive(pid) && Date.now() < deadline) await sleep(500);
    expect(processAlive(pid)).toBe(false);
    expect(ended).toBe(true);
  }, 60_000);

  it("holds nothing where no master listens", async () => {
    expect(await holdMaster(`${dir}/none`)).toBeUndefined();
  });
});
