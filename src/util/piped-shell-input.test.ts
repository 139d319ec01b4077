// What `sh -s` is piped (pipedShellInput): bash, NixOS's sh, reads it at once
// rather than one byte at a time, and bash and dash run it alike. Real shells; the count of a
// shell's reads is the kernel's (/proc/PID/io), not a time.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { pipedShellInput } from "./piped-shell-input.js";

/** A script of `lines` no-op lines, then one that prints the shell's read calls and its args. */
function countingScript(lines: number): string {
  return `${":\n".repeat(lines)}grep syscr /proc/$$/io\nprintf '[%s]' "$@"\nexit 7\n`;
}

function pipeTo(shell: string, input: string, args: readonly string[]) {
  const r = spawnSync(shell, ["-s", "--", ...args], { input, encoding: "utf8", timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function reads(stdout: string): number {
  const m = /syscr: (\d+)/.exec(stdout);
  if (m === null) throw new Error(`no read count in ${JSON.stringify(stdout)}`);
  return Number(m[1]);
}

describe("the input piped to sh -s", () => {
  it("bash reads at once, where the bare script costs a read per byte", () => {
    const script = countingScript(20_000);
    const bare = pipeTo("bash", script, []);
    const piped = pipeTo("bash", pipedShellInput(script), []);
    expect(bare.code).toBe(7);
    expect(piped.code, piped.stderr).toBe(7);
    // 40,000 bytes: one read each bare; a handful (the first line, the shell's own start) piped.
    expect(reads(bare.stdout)).toBeGreaterThan(40_000);
    expect(reads(piped.stdout)).toBeLessThan(500);
  });

  it("bash and dash run it alike: its arguments, its exit status and what it prints", () => {
    const script = countingScript(3);
    const args = ["a b", "", "-x", "$HOME", "c'd"];
    for (const shell of ["bash", "dash"]) {
      const r = pipeTo(shell, pipedShellInput(script), args);
      expect(r.code, `${shell}: ${r.stderr}`).toBe(7);
      expect(r.stdout.split("\n").at(-1), shell).toBe("[a b][][-x][$HOME][c'd]");
      expect(r.stderr, shell).toBe("");
    }
  });

  it("counts the script's bytes, not its characters", () => {
    const script = `printf '%s' 'é…€'\nexit 0\n`;
    for (const shell of ["bash", "dash"]) {
      const r = pipeTo(shell, pipedShellInput(script), []);
      expect(r.code, `${shell}: ${r.stderr}`).toBe(0);
      expect(r.stdout, shell).toBe("é…€");
    }
  });
});
