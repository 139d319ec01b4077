// runCommand against real commands: output, allowed exit codes, and the bound on what it keeps.
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
});
