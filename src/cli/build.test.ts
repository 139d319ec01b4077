// `nixship build` shows what builds as deploy does, with deploy's renderer: on a terminal one
// line redrawn in place, on a pipe a line for each change.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import type { BuildProgress } from "../cache/nix-activity.js";
import { showBuildProgress } from "./build.js";

/** A stream that keeps what is written; `tty` makes it look like a terminal. */
function output(tty: boolean): Writable & { isTTY?: boolean; columns?: number; text: string } {
  const out = Object.assign(
    new Writable({
      write(chunk, _encoding, done) {
        out.text += String(chunk);
        done();
      },
    }),
    { text: "", ...(tty ? { isTTY: true, columns: 100 } : {}) },
  );
  return out;
}

const drv = (name: string) => `/nix/store/${"a".repeat(32)}-${name}.drv`;
const running = (name: string): BuildProgress["running"][number] => ({
  drv: drv(name),
  name,
  machine: undefined,
  since: Date.now(),
});
const STEPS: BuildProgress[] = [
  { done: 0, expected: 2, failed: 0, running: [running("lib-1.0")] },
  { done: 1, expected: 2, failed: 0, running: [running("web-system")] },
];

function show(tty: boolean): string {
  const out = output(tty);
  const progress = showBuildProgress(out, false);
  for (const step of STEPS) progress.onProgress(step);
  progress.stop();
  return out.text;
}

describe("nixship build's progress", () => {
  it("on a terminal: one line, drawn again in place, as deploy draws it", () => {
    const text = show(true);
    // The second state is drawn over the first: the cursor goes up a line and clears it.
    expect(text).toContain(
      "\x1b[1A\r\x1b[2Kbuilding web-system (0.0s); 1 of 2 derivations built\n",
    );
    expect(text.startsWith("\r\x1b[2Kbuilding lib-1.0 (0.0s); 0 of 2 derivations built\n")).toBe(
      true,
    );
  });

  it("on a pipe: a plain line for each change, nothing redrawn", () => {
    expect(show(false)).toMatch(
      /^ {2}building lib-1\.0 \(\S+\); 0 of 2 derivations built\n {2}building web-system \(\S+\); 1 of 2 derivations built\n$/,
    );
  });
});
