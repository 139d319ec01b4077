// The host and the deployer choose a path's delta bases alike: activate.sh's delta_pairs (awk,
// on the host) gives the pairs deltaPairsFor (src/cache/delta-bases.ts) gives, in its order, for
// closures with many paths of one name, versions near and far, outputs and names without one;
// and both take their caps from src/cache/delta-caps.ts, which the build writes into the script.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deltaPairsFor } from "../src/cache/delta-bases.js";
import * as caps from "../src/cache/delta-caps.js";
import { SCRIPT_CONSTANTS } from "../src/host/script-constants.js";
import { NIX32_ALPHABET } from "../src/nix/nix32.js";
import type { StorePath } from "../src/nix/store-path.js";
import { runOk } from "../support/cli.js";
import { scriptPart } from "./support/script-part.js";

const ROOT = new URL("..", import.meta.url).pathname;
/** The script as the build wrote it. */
const BUILT = join(ROOT, "dist/host/activate.sh");

let work: string;
/** The delta step's part, its constants in place as the build puts them. */
let part: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-delta-pairs-"));
  part = await scriptPart(work, "26-deltas.sh");
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

function storePath(name: string): StorePath {
  const hash = [...randomBytes(32)].map((b) => NIX32_ALPHABET[b % 32]).join("");
  return `/nix/store/${hash}-${name}` as StorePath;
}

/** The script's delta_pairs over these files (its part sourced alone: definitions only). */
async function hostPairs(targets: StorePath[], closure: StorePath[]): Promise<string[]> {
  await writeFile(join(work, "targets"), `${targets.join("\n")}\n`);
  await writeFile(join(work, "closure"), `${closure.join("\n")}\n`);
  const out = await runOk("sh", [
    "-c",
    `. "$1" && delta_pairs "$2" "$3"`,
    "sh",
    part,
    join(work, "targets"),
    join(work, "closure"),
  ]);
  return out.split("\n").filter(Boolean);
}

describe("delta_pairs (activate.sh) and deltaPairsFor (the deployer)", () => {
  it("choose the same bases, in the same order", async () => {
    const names = [
      "openssl-3.0.13",
      "openssl-3.0.13-dev",
      "openssl-3.0.14",
      "openssl-1.1.1w",
      "openssl-3.0.13-bin",
      "hello-2.12",
      "hello-2.12.1",
      "hello-2.10",
      "source",
      "source",
      "source",
      "source",
      "gtk+3-3.24.41",
      "etc",
      "unit-nixship.service",
      "python3.11-requests-2.31.0",
      "python3.11-requests-2.28.1",
      "linux-6.1.76-modules",
      "linux-6.1.76",
      "linux-6.6.1",
    ];
    const closure = names.map(storePath);
    const targets = [
      "openssl-3.0.13",
      "openssl-3.0.15-dev",
      "hello-2.12.1",
      "source",
      "gtk+3-3.24.42",
      "etc",
      "unit-nixship.service",
      "python3.11-requests-2.31.0",
      "linux-6.1.77",
      "nothing-like-it-1.0",
    ].map(storePath);
    const expected = deltaPairsFor(closure, targets).map((p) => `${p.target} ${p.base}`);
    expect(expected.length).toBeGreaterThan(15);
    expect(await hostPairs(targets, closure)).toEqual(expected);
  });

  it("take their caps from one module, which the build wrote into the script", async () => {
    // Every cap of src/cache/delta-caps.ts is one the script takes, with its value.
    expect(SCRIPT_CONSTANTS).toEqual({
      DELTA_MAX_PATHS: caps.DELTA_MAX_PATHS,
      DELTA_MAX_BASES: caps.DELTA_MAX_BASES,
      DELTA_MAX_PER_NAME: caps.DELTA_MAX_PER_NAME,
      DELTA_INFO_LIMIT: caps.DELTA_INFO_LIMIT,
    });
    const script = await readFile(BUILT, "utf8");
    for (const [name, value] of Object.entries(SCRIPT_CONSTANTS)) {
      const set = [...script.matchAll(new RegExp(`(?:^| )${name}=(\\S*)`, "gm"))].map((m) => m[1]);
      expect(set, name).toEqual([String(value)]);
    }
    expect(script).not.toMatch(/@[A-Z][A-Z0-9_]*@/);
  });

  it(`look for deltas of at most ${caps.DELTA_MAX_PATHS} paths, the first the host lacks in byte order, both alike`, async () => {
    const closure = [storePath("lib-1.0")];
    const targets = Array.from({ length: caps.DELTA_MAX_PATHS + 5 }, (_, i) =>
      storePath(`lib-2.${i}`),
    );
    const pairs = await hostPairs(targets, closure);
    const first = [...targets].sort().slice(0, caps.DELTA_MAX_PATHS);
    expect(pairs).toEqual(first.map((t) => `${t} ${closure[0]}`));
    // The deployer counts no delta the host does not ask for.
    expect(deltaPairsFor(closure, targets).map((p) => `${p.target} ${p.base}`)).toEqual(pairs);
  });

  it(`weigh the first ${caps.DELTA_MAX_PER_NAME} paths of a name in byte order, however the closure lists them, both alike`, async () => {
    const closure = Array.from({ length: caps.DELTA_MAX_PER_NAME + 50 }, (_, i) =>
      storePath(`source-${i % 7}`),
    );
    const targets = [storePath("source-3"), storePath("source-9")];
    const expected = deltaPairsFor(closure, targets).map((p) => `${p.target} ${p.base}`);
    const weighed = new Set([...closure].sort().slice(0, caps.DELTA_MAX_PER_NAME));
    expect(expected.length).toBe(2 * caps.DELTA_MAX_BASES);
    for (const pair of expected) expect(weighed.has(pair.split(" ")[1] as StorePath)).toBe(true);
    expect(await hostPairs(targets, [...closure].reverse())).toEqual(expected);
  });

  it(`take at most ${caps.DELTA_MAX_BASES} bases a path, and no path as its own base`, async () => {
    const closure = Array.from({ length: 8 }, (_, i) => storePath(`lib-1.${i}`));
    const target = storePath("lib-1.3");
    const pairs = await hostPairs([target, closure[2] as StorePath], closure);
    expect(pairs.filter((p) => p.startsWith(`${target} `))).toHaveLength(caps.DELTA_MAX_BASES);
    expect(pairs).not.toContain(`${closure[2]} ${closure[2]}`);
    expect(pairs).toEqual(
      deltaPairsFor(closure, [target, closure[2] as StorePath]).map((p) => `${p.target} ${p.base}`),
    );
  });
});
