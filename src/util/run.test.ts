// runCommand against real commands: output, allowed exit codes, and the bounds on what it keeps
// and how long it runs.
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { runCommand } from "./run.js";

describe("runCommand", () => {
  it("returns a command's output and exit code", async () => {
    const r = await runCommand("sh", ["-c", "printf hello; printf oops >&2; exit 3"], {
      okCodes: [3],
    });
    expect(r).toEqual({ code: 3, stdout: "hello", stderr: "oops" });
  });

  it("fails with the command and its last words when it exits otherwise", async () => {
    await expect(
      runCommand("sh", ["-c", "echo broken >&2; exit 2"], { purpose: "test it" }),
    ).rejects.toThrow(/'sh -c .*' to test it exited with 2:\nbroken/);
  });

  it("says no credential of a source reference, in the command line or in its last words", async () => {
    // As `nix build 'git+https://oauth2:TOKEN@host/repo'` that fails and repeats the URL.
    const failed = runCommand("sh", [
      "-c",
      'echo "error: cannot fetch $1" >&2; exit 1',
      "sh",
      "git+https://oauth2:glpat-SECRET123@127.0.0.1:9/org/repo",
    ]);
    await expect(failed).rejects.toThrow(
      /exited with 1:\nerror: cannot fetch git\+https:\/\/.*127\.0\.0\.1:9\/org\/repo/,
    );
    const message = await failed.then(
      () => "",
      (err: Error) => err.message,
    );
    expect(message).toContain("git+https://");
    expect(message).not.toContain("glpat-SECRET123");
  });

  it("stops a command that writes more than its output limit, and says so", async () => {
    await expect(
      runCommand("sh", ["-c", "while :; do printf '%01024d' 0; done"], {
        maxOutput: 1024 * 1024,
        purpose: "read a runaway",
      }),
    ).rejects.toThrow(/to read a runaway wrote more than 1048576 bytes of output, and was stopped/);
  });

  it("keeps output up to the limit", async () => {
    const r = await runCommand("sh", ["-c", "head -c 65536 /dev/zero"], { maxOutput: 65536 });
    expect(r.stdout.length).toBe(65536);
  });

  it("stops a command that runs past its deadline, and says so", async () => {
    await expect(
      runCommand("sleep", ["30"], { timeoutMs: 300, purpose: "wait for a hung peer" }),
    ).rejects.toThrow("'sleep 30' to wait for a hung peer took longer than 0.3 s, and was stopped");
  });

  it("says a command stopped by its caller was killed, not late", async () => {
    await expect(
      runCommand("sleep", ["30"], { timeoutMs: 60_000, signal: AbortSignal.timeout(300) }),
    ).rejects.toThrow("'sleep 30' was killed by SIGTERM");
  });

  /** An input stream far larger than a pipe holds: 8 MiB, produced as it is read. */
  const largeInput = () =>
    Readable.from(
      (function* () {
        for (let i = 0; i < 128; i++) yield Buffer.alloc(65536, 1);
      })(),
    );

  it("says how a command that stops reading its input ended, not the broken pipe", async () => {
    await expect(
      runCommand("sh", ["-c", "head -c 10 >/dev/null; echo refused >&2; exit 3"], {
        input: largeInput(),
      }),
    ).rejects.toThrow(/exited with 3:\nrefused/);
  });

  it("says a command stopped at its deadline while its input waits was late", async () => {
    await expect(
      runCommand("sh", ["-c", "head -c 10 >/dev/null; exec sleep 30"], {
        input: largeInput(),
        timeoutMs: 300,
      }),
    ).rejects.toThrow(/took longer than 0.3 s, and was stopped/);
  });

  it("ends a moment after the command exits when a process it left behind holds its output", async () => {
    const started = Date.now();
    const r = await runCommand("sh", ["-c", "sleep 60 & echo $!"], { timeoutMs: 1000 });
    process.kill(Number(r.stdout.trim()), "SIGKILL");
    expect(r.code).toBe(0);
    // Its exit, then the grace for what it wrote (2 s), not the sleep's 60 s.
    expect(Date.now() - started).toBeLessThan(30_000);
  }, 60_000);

  it("reports an input that fails as the cause, and stops the command", async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error("the NAR's hash is not the one signed"));
      },
    });
    await expect(
      runCommand("sleep", ["30"], { input: failing, timeoutMs: 20_000 }),
    ).rejects.toThrow("the NAR's hash is not the one signed");
  });
});
