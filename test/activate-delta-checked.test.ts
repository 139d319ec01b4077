// activate.sh's delta_checked reads the fetched deltas' small files in one pass (one wc, one
// awk, whatever their number): a delta whose delta-info names its pair and whose narinfo is its
// target's goes on, with the hashes and sizes they give; each other one comes whole, logged with
// why. Run on the delta step's part alone (definitions only), over files made here.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DELTA_INFO_LIMIT } from "../src/cache/delta-caps.js";
import { run } from "../support/cli.js";
import { logCommandCalls } from "./support/command-log.js";
import { scriptPart } from "./support/script-part.js";

let work: string;
let part: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-delta-checked-"));
  part = await scriptPart(work, "26-deltas.sh");
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const HASH = (c: string) => `sha256:${c.repeat(52)}`;
const store = (hash: string, name: string) => `/nix/store/${hash.repeat(32)}-${name}`;

interface Delta {
  readonly target: string;
  readonly base: string;
  /** The delta path's files; a file left out is not written (undefined: not fetched at all). */
  readonly files?: { readonly info?: string; readonly narinfo?: string; readonly zst?: boolean };
}

function deltaInfo(target: string, base: string, extra = ""): string {
  return `Engine: zstd-patch\nTarget: ${target}\nBase: ${base}\nBaseNarHash: ${HASH("b")}\nBaseNarSize: 4096\n${extra}`;
}

function narinfo(target: string): string {
  return `StorePath: ${target}\nURL: nar/x.nar.zst\nCompression: zstd\nNarHash: ${HASH("c")}\nNarSize: 8192\nReferences: \nSig: k:s\n`;
}

/**
 * Runs delta_checked over `deltas`: its output lines, the targets it failed, its log, and how
 * many times it ran awk and wc (through counting stand-ins first on the PATH).
 */
async function checked(deltas: readonly Delta[]) {
  const dir = await mkdtemp(join(work, "run-"));
  const lines: string[] = [];
  for (const [i, d] of deltas.entries()) {
    const path = join(dir, `delta-${i}`);
    lines.push(`${path} ${d.target} ${d.base}`);
    if (d.files === undefined) continue;
    await mkdir(path);
    if (d.files.info !== undefined) await writeFile(join(path, "delta-info"), d.files.info);
    if (d.files.narinfo !== undefined) await writeFile(join(path, "narinfo"), d.files.narinfo);
    if (d.files.zst !== false) await writeFile(join(path, "delta.zst"), "");
  }
  await writeFile(join(dir, "picked"), `${lines.join("\n")}\n`);
  const wc = await logCommandCalls("wc");
  const awk = await logCommandCalls("awk", wc.path);
  const r = await run(
    "sh",
    [
      "-c",
      'log() { printf "activate: %s\\n" "$*" >&2; }; . "$1" && x_dir=$2 && : >"$x_dir/failed" && delta_checked "$x_dir/picked" "$x_dir/checked"',
      "sh",
      part,
      dir,
    ],
    { env: { ...process.env, PATH: awk.path } },
  );
  expect(r.code, r.stderr).toBe(0);
  const read = async (file: string) =>
    (await readFile(join(dir, file), "utf8")).split("\n").filter(Boolean);
  const runs = (await wc.calls()).length + (await awk.calls()).length;
  await wc.remove();
  await awk.remove();
  return { out: await read("checked"), failed: await read("failed"), log: r.stderr, dir, runs };
}

describe("delta_checked (activate.sh)", () => {
  it("passes each well-formed delta of its pair, with its hashes and sizes, and tells why of each other", async () => {
    const t = (n: string) => store(n, `lib${n}-1.0`);
    const b = (n: string) => store(n, `lib${n}-0.9`);
    const good = (n: string): Delta => ({
      target: t(n),
      base: b(n),
      files: { info: deltaInfo(t(n), b(n)), narinfo: narinfo(t(n)) },
    });
    const deltas: Delta[] = [
      good("a"),
      { target: t("f"), base: b("f") },
      { ...good("g"), files: { ...good("g").files, zst: false } },
      { ...good("h"), files: { narinfo: narinfo(t("h")) } },
      {
        ...good("i"),
        files: {
          info: deltaInfo(t("i"), b("i"), "X: ".padEnd(DELTA_INFO_LIMIT, "x")),
          narinfo: narinfo(t("i")),
        },
      },
      {
        ...good("j"),
        files: { info: deltaInfo(t("j"), b("j")), narinfo: narinfo(t("j")).padEnd(65537, "\n") },
      },
      { ...good("k"), files: { info: deltaInfo(t("k"), b("a")), narinfo: narinfo(t("k")) } },
      {
        ...good("l"),
        files: { info: deltaInfo(t("l"), b("l"), `Base: ${b("l")}\n`), narinfo: narinfo(t("l")) },
      },
      { ...good("m"), files: { info: deltaInfo(t("m"), b("m")), narinfo: narinfo(t("a")) } },
      {
        ...good("n"),
        files: {
          info: deltaInfo(t("n"), b("n")).replace("4096", "40x96"),
          narinfo: narinfo(t("n")),
        },
      },
      good("p"),
    ];
    const { out, failed, log, dir } = await checked(deltas);
    expect(out).toEqual(
      ["a", "p"].map(
        (n, i) =>
          `${join(dir, `delta-${i === 0 ? 0 : deltas.length - 1}`)} ${t(n)} ${b(n)} ${HASH("b")} 4096 ${HASH("c")} 8192`,
      ),
    );
    const why: Record<string, string> = {
      f: "the delta was not fetched",
      g: "its delta-info or narinfo is too large or missing",
      h: "its delta-info or narinfo is too large or missing",
      i: "its delta-info or narinfo is too large or missing",
      j: "its delta-info or narinfo is too large or missing",
      k: "its delta-info is not of this pair, or its narinfo not the target's, or malformed",
      l: "its delta-info is not of this pair, or its narinfo not the target's, or malformed",
      m: "its delta-info is not of this pair, or its narinfo not the target's, or malformed",
      n: "its delta-info is not of this pair, or its narinfo not the target's, or malformed",
    };
    expect([...failed].sort()).toEqual(Object.keys(why).map(t).sort());
    for (const [n, reason] of Object.entries(why)) {
      expect(log).toContain(
        `activate: deltas: ${t(n)} comes whole: the delta from ${b(n)}: ${reason}\n`,
      );
    }
  });

  it("reads a thousand deltas with a handful of processes, not some for each", async () => {
    const deltas: Delta[] = Array.from({ length: 1000 }, (_, i) => {
      const target = `/nix/store/${String(i).padStart(32, "0")}-lib-${i}`;
      const base = `/nix/store/${String(i).padStart(32, "1")}-lib-${i}`;
      return { target, base, files: { info: deltaInfo(target, base), narinfo: narinfo(target) } };
    });
    const { out, failed, runs } = await checked(deltas);
    expect(out).toHaveLength(1000);
    expect(failed).toEqual([]);
    // One awk lists the files, one wc sizes them (xargs may split a long list), one awk reads them.
    expect(runs).toBeGreaterThanOrEqual(3);
    expect(runs).toBeLessThanOrEqual(6);
  });
});
