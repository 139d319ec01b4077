// The bounded, marked evaluation every flake evaluation runs through, with the real Nix: the
// mark it failed under and Nix's words, its heap bound, its deadline, an interrupt, its output.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { nixMarkFunction } from "../nix/eval-trace.js";
import { evalFailureText, markedEval } from "./marked-eval.js";

const MARK = "nixship-test-mark";
const bounds = { mark: MARK, timeoutSeconds: 60, jsonLimit: 1024 * 1024 };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-marked-eval-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const heapGiven = process.env.GC_MAXIMUM_HEAP_SIZE;
afterEach(() => {
  if (heapGiven === undefined) delete process.env.GC_MAXIMUM_HEAP_SIZE;
  else process.env.GC_MAXIMUM_HEAP_SIZE = heapGiven;
});

/** A FIFO nothing writes to: reading it (`builtins.readFile`) waits for ever. */
function fifo(name: string): string {
  const path = join(dir, name);
  execFileSync("mkfifo", [path]);
  return path;
}

describe("a marked evaluation", () => {
  it("gives the JSON of one that succeeds", async () => {
    const r = await markedEval(`{ a = [ 1 "x" ]; }`, bounds);
    expect(r).toEqual({ kind: "ok", json: '{"a":[1,"x"]}' });
  });

  it("names the deepest mark a failure was under, Nix's words and where it is", async () => {
    const r = await markedEval(
      `let mark = ${nixMarkFunction(MARK)}; in
       mark [ "hosts" ] { web = mark [ "hosts" "web" ] (1 + "x"); }.web`,
      bounds,
    );
    expect(r.kind).toBe("failed");
    if (r.kind !== "failed") return;
    expect(r.path).toEqual(["hosts", "web"]);
    expect(r.message).toMatch(/cannot add a string to an integer/);
    expect(r.outOfMemory).toBe(false);
    expect(evalFailureText(r)).toBe(r.message);
  });

  it("runs Nix under a heap bound of three quarters of this machine's memory", async () => {
    delete process.env.GC_MAXIMUM_HEAP_SIZE;
    const r = await markedEval(`builtins.getEnv "GC_MAXIMUM_HEAP_SIZE"`, bounds);
    expect(r).toEqual({
      kind: "ok",
      json: JSON.stringify(String(Math.floor((totalmem() * 3) / 4))),
    });
  });

  it("says the bound an evaluation ran out of, one given in the environment kept", async () => {
    process.env.GC_MAXIMUM_HEAP_SIZE = "67108864";
    const r = await markedEval(
      `builtins.length (builtins.genList (i: "t\${toString i}") 20000000)`,
      bounds,
    );
    expect(r.kind).toBe("failed");
    if (r.kind !== "failed") return;
    expect(r.outOfMemory).toBe(true);
    expect(evalFailureText(r)).toBe(
      "the evaluation needed more memory than its bound, 67108864 bytes (GC_MAXIMUM_HEAP_SIZE in the environment)",
    );
  });

  it("stops one that outlives its deadline", async () => {
    const r = await markedEval(`builtins.readFile ${fifo("never")}`, {
      ...bounds,
      timeoutSeconds: 1,
    });
    expect(r).toEqual({ kind: "timeout" });
  });

  it("stops when interrupted, saying so", async () => {
    const stop = new AbortController();
    setTimeout(() => stop.abort("interrupted (SIGINT)"), 300);
    await expect(
      markedEval(`builtins.readFile ${fifo("interrupted")}`, { ...bounds, signal: stop.signal }),
    ).rejects.toThrow("the evaluation was stopped: interrupted (SIGINT)");
  });

  it("refuses JSON past its limit", async () => {
    const r = await markedEval(`builtins.genList (i: i) 1000`, { ...bounds, jsonLimit: 100 });
    expect(r).toEqual({ kind: "too-large" });
  });
});
