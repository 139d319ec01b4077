// A nixship killed outright (SIGKILL: what Terraform does to an external data source it gives up
// on, or the OOM killer) runs no exit hook: the commands it started still stop, by the kernel's
// SIGTERM (PR_SET_PDEATHSIG through setpriv), so that no `nix build` runs on orphaned.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";

const OWNED_CHILDREN = new URL("../dist/util/owned-children.js", import.meta.url).href;

/** Whether `pid` still runs (a zombie has ended: it waits only to be reaped). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return stat !== undefined && !/^\d+ \(.*\) Z /.test(stat);
}

async function commandOf(pid: number): Promise<string> {
  return (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).replaceAll("\0", " ");
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A Node process that starts `sleep 300` (owned or not) and prints its pid, then idles. */
function parentWith(owned: boolean) {
  const start = owned
    ? `const { spawnOwned } = await import(${JSON.stringify(OWNED_CHILDREN)}); const p = spawnOwned("sleep", ["300"]);`
    : `const { spawn } = await import("node:child_process"); const p = spawn("sleep", ["300"], { stdio: "ignore" });`;
  const parent = spawn(
    process.execPath,
    ["--input-type=module", "-e", `${start} console.log(p.pid); setInterval(() => {}, 1000);`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const pid = new Promise<number>((resolve, reject) => {
    parent.stdout.once("data", (d: Buffer) => resolve(Number(d.toString().trim())));
    parent.once("exit", (code) => reject(new Error(`the parent exited with ${code}`)));
  });
  return { parent, pid };
}

describe("owned children of a process killed outright", () => {
  it("stop with it (SIGTERM from the kernel), where a child not owned runs on", async () => {
    const owned = parentWith(true);
    const ownedPid = await owned.pid;
    // setpriv execs the command: the same pid, once it has.
    await until("the owned child runs sleep", async () =>
      /^(\S*\/)?sleep 300 $/.test(await commandOf(ownedPid)),
    );
    const other = parentWith(false);
    const otherPid = await other.pid;
    try {
      owned.parent.kill("SIGKILL");
      other.parent.kill("SIGKILL");
      await until("the owned child stopped", async () => !(await running(ownedPid)));
      expect(await running(otherPid)).toBe(true);
    } finally {
      for (const pid of [ownedPid, otherPid]) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // Gone already.
        }
      }
    }
  });
});
