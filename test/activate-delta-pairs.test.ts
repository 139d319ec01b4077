// The host and the deployer choose a path's delta bases alike: activate.sh's delta_pairs (awk,
// on the host) gives the pairs deltaPairsFor (src/cache/delta-bases.ts) gives, in its order, for
// closures with many paths of one name, versions near and far, outputs and names without one.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deltaPairsFor } from "../src/cache/delta-bases.js";
import { NIX32_ALPHABET } from "../src/nix/nix32.js";
import type { StorePath } from "../src/nix/store-path.js";
import { runOk } from "../support/cli.js";

const PART = new URL("../src/host/activate/26-deltas.sh", import.meta.url).pathname;

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-delta-pairs-"));
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
    PART,
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

  it("take at most 3 bases a path, and no path as its own base", async () => {
    const closure = Array.from({ length: 8 }, (_, i) => storePath(`lib-1.${i}`));
    const target = storePath("lib-1.3");
    const pairs = await hostPairs([target, closure[2] as StorePath], closure);
    expect(pairs.filter((p) => p.startsWith(`${target} `))).toHaveLength(3);
    expect(pairs).not.toContain(`${closure[2]} ${closure[2]}`);
    expect(pairs).toEqual(
      deltaPairsFor(closure, [target, closure[2] as StorePath]).map((p) => `${p.target} ${p.base}`),
    );
  });
});
