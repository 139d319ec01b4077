// The README quick start's nix.conf lines (from `mkdir -p /etc/nix` to the `done` of their loop),
// run as written with /etc/nix replaced by a directory of the test's own.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";
import { run } from "../../support/cli.js";

const README = new URL("../../README.md", import.meta.url);

/** The README's nix.conf lines, as a script. */
export async function readmeNixConfScript(): Promise<string> {
  const lines = (await readFile(README, "utf8")).split("\n");
  const start = lines.findIndex((l) => l.startsWith("mkdir -p /etc/nix"));
  const end = lines.findIndex((l, i) => i > start && /^(done|CONF)$/.test(l));
  expect(start, "the README's nix.conf lines start with 'mkdir -p /etc/nix'").toBeGreaterThan(0);
  expect(end, "the README's nix.conf lines end with 'done'").toBeGreaterThan(start);
  return lines.slice(start, end + 1).join("\n");
}

/** Runs the README's nix.conf lines `times` times into `dir`; returns the nix.conf made. */
export async function runReadmeNixConf(dir: string, times = 1): Promise<string> {
  const script = (await readmeNixConfScript()).replaceAll("/etc/nix", dir);
  for (let i = 0; i < times; i++) {
    const r = await run("bash", ["-euc", script]);
    expect(r.code, r.stderr).toBe(0);
  }
  return readFile(join(dir, "nix.conf"), "utf8");
}
