import { describe, expect, it } from "vitest";
import { checkActivationResult } from "./activation-result.js";
import { hostClosure, readClosureLines } from "./host-closure.js";

const a = `/nix/store/${"a".repeat(32)}-lib-1.0`;
const b = `/nix/store/${"b".repeat(32)}-app-2.0`;
const lines = `${a} 288\n${b} 392 1 2\n`;

describe("a host's closure (activate.sh closure)", () => {
  it("reads paths, sizes and references by line number", () => {
    expect(readClosureLines(lines, b)).toEqual({
      kind: "read",
      nodes: [
        { path: a, narSize: 288, references: [] },
        { path: b, narSize: 392, references: [a, b] },
      ],
    });
  });

  it("refuses what a broken or lying host sends, saying what is wrong", () => {
    const why = (text: string, root = b) => {
      const r = readClosureLines(text, root);
      return r.kind === "failed" ? r.reason : "read";
    };
    expect(why(`/etc/passwd 1\n`)).toMatch(/line 1 does not start with a store path/);
    expect(why(`${b} many\n`)).toMatch(/line 1 has no NAR size/);
    expect(why(`${b} 1 2\n`)).toMatch(/line 1 refers to line 2, which is not there/);
    expect(why(`${b} 1 0\n`)).toMatch(/refers to line 0/);
    expect(why(`${a} 1\n`)).toMatch(new RegExp(`does not hold ${b} itself`));
  });

  it("is taken from the script's answer only for the path asked about", () => {
    const result = checkActivationResult({
      ok: true,
      command: "closure",
      path: b,
      closure: Buffer.from(lines).toString("base64"),
    });
    if ("problem" in result) throw new Error(result.problem);
    expect(hostClosure({ result, failure: "" } as never, b).kind).toBe("read");
    expect(hostClosure({ result, failure: "" } as never, a)).toEqual({
      kind: "failed",
      reason: `the host answered for ${b}, not ${a}`,
    });
    const absent = checkActivationResult({
      ok: false,
      command: "closure",
      result: "absent",
      exitCode: 3,
      message: `${b} is not in this host's store`,
    });
    if ("problem" in absent) throw new Error(absent.problem);
    expect(hostClosure({ result: absent, failure: "" } as never, b)).toEqual({
      kind: "failed",
      reason: `${b} is not in this host's store`,
    });
    expect(
      checkActivationResult({ ok: true, command: "closure", path: b, closure: "not base64!" }),
    ).toEqual({
      problem: expect.stringMatching(/closure is not base64/),
    });
  });
});
