// What a deploy pipes to a host's `sh -s` (scriptInput: its variables, then activate.sh
// compacted, read at once by every shell): bash, NixOS's sh, and dash answer alike.
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { scriptInput } from "./activation.js";

function pipeTo(shell: string, input: string, args: readonly string[]) {
  const r = spawnSync(shell, ["-s", "--", ...args], { input, encoding: "utf8", timeout: 30_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("scriptInput", () => {
  it("activate.sh with its variables answers the same under bash and dash", () => {
    const input = scriptInput({ NIXSHIP_CHECK_PATHS: "/nix/store/x" });
    const answers = ["bash", "dash"].map((shell) => pipeTo(shell, input, ["explode"]));
    for (const r of answers) {
      expect(r.code, r.stderr).toBe(2);
      expect(JSON.parse(r.stdout.trim())).toMatchObject({
        ok: false,
        result: "usage",
        message: "unknown command 'explode'",
      });
    }
    expect(answers[0]?.stdout).toBe(answers[1]?.stdout);
  });
});
