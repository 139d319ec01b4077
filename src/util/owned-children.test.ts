import { spawn } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ownChild, ownedChildrenRunning, spawnOwned, stopOwnedChildren } from "./owned-children.js";

/** A child that has exited, with how: its code or the signal that ended it. */
function ended(proc: ReturnType<typeof spawn>): Promise<string> {
  return new Promise((resolve) => proc.once("exit", (code, sig) => resolve(sig ?? String(code))));
}

describe("owned children", () => {
  it("stops each: SIGTERM, and SIGKILL after the grace for one that ignores it", async () => {
    const polite = spawn("sleep", ["30"], { stdio: "ignore" });
    // The shell itself ignores SIGTERM (its sleeps end by themselves), once it says so.
    const stubborn = spawn("sh", ["-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    await new Promise<void>((resolve) => stubborn.stdout?.once("data", () => resolve()));
    const politeEnd = ended(polite);
    const stubbornEnd = ended(stubborn);
    ownChild(polite);
    ownChild(stubborn);
    expect(ownedChildrenRunning()).toBe(2);
    await stopOwnedChildren(300);
    expect(await politeEnd).toBe("SIGTERM");
    expect(await stubbornEnd).toBe("SIGKILL");
    expect(ownedChildrenRunning()).toBe(0);
  });

  it("spawnOwned: a command that is not there fails to start as spawn's does (ENOENT)", async () => {
    const proc = spawnOwned("nixship-no-such-command", ["x"]);
    const error = await new Promise<NodeJS.ErrnoException>((resolve) =>
      proc.once("error", resolve),
    );
    expect(error.code).toBe("ENOENT");
    expect(error.message).toContain("nixship-no-such-command");
  });

  it("spawnOwned: a script whose #! interpreter is not there fails to start (ENOENT), as spawn's does", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-bad-shebang-"));
    try {
      const tool = join(dir, "nixship-bad-shebang-tool");
      await writeFile(tool, "#!/nonexistent/nixship-interpreter -e\necho hi\n");
      await chmod(tool, 0o755);
      for (const [command, env] of [
        [tool, process.env],
        ["nixship-bad-shebang-tool", { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}` }],
      ] as const) {
        const plain = spawn(command, [], { env, stdio: "ignore" });
        const owned = spawnOwned(command, [], { env });
        const [plainError, ownedError] = await Promise.all(
          [plain, owned].map(
            (proc) =>
              new Promise<NodeJS.ErrnoException | string>((resolve) => {
                proc.once("error", resolve);
                proc.once("close", (code) => resolve(`closed with ${code}`));
              }),
          ),
        );
        expect(typeof plainError === "string" ? plainError : plainError.code).toBe("ENOENT");
        expect(typeof ownedError === "string" ? ownedError : ownedError.code).toBe("ENOENT");
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("spawnOwned: runs the command itself (setpriv execs it), its output piped", async () => {
    const proc = spawnOwned("sh", ["-c", "echo $$; echo err >&2"]);
    let out = "";
    proc.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    // All it wrote is read by 'close' ('exit' may come first).
    const closed = await new Promise<number | null>((resolve) => proc.once("close", resolve));
    expect(closed).toBe(0);
    expect(Number(out.trim())).toBe(proc.pid);
  });

  it("spawnOwned: a setpriv without --pdeathsig (an older one, busybox's) is passed over", async () => {
    const dir = await mkdtemp(join(tmpdir(), "nixship-old-setpriv-"));
    try {
      const fake = join(dir, "setpriv");
      await writeFile(
        fake,
        "#!/bin/sh\necho \"setpriv: unrecognized option '--pdeathsig'\" >&2\nexit 1\n",
      );
      await chmod(fake, 0o755);
      const proc = spawnOwned("sh", ["-c", "echo answered"], {
        env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}` },
      });
      let out = "";
      proc.stdout.on("data", (d: Buffer) => {
        out += d.toString();
      });
      const closed = await new Promise<number | null>((resolve) => proc.once("close", resolve));
      expect(closed).toBe(0);
      expect(out).toBe("answered\n");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("forgets a child once it exited, and stops nothing when none runs", async () => {
    const quick = spawn("true", [], { stdio: "ignore" });
    const end = ended(quick);
    ownChild(quick);
    expect(await end).toBe("0");
    expect(ownedChildrenRunning()).toBe(0);
    await stopOwnedChildren(10_000); // settles at once: no wait for the grace
  });
});
