// Seeded fuzz of the cache read paths: 200 mutated NARs and 200 mutated narinfos,
// each planted in a fresh copy of a small signed directory cache, then read in-process the
// ways `nixship verify` and `nixship fetch --restore` read it (readNarInfo and
// streamVerifiedNar directly, verifyCache, fetchAndRestore). Every case must end in a clear
// InputError/OperationError that is not the CLI's "internal" (bug) code, or succeed only when
// an independent reading (the test's own narinfo parse, ed25519 check and decompression, and
// `nix-store --dump` of what was restored) confirms that what was accepted is what the test's
// key signed. Reads must write nothing (the case's directory is unchanged but for the restore
// target) and leave no staging behind. About half the mutated narinfos and NARs are re-signed
// with the trusted key, so the checks behind the signature (hashes, sizes, the NAR parser,
// key and URL validation) are exercised too, not only the signature check.
import { spawnSync } from "node:child_process";
import { createHash, createPrivateKey, verify as verifySignature } from "node:crypto";
import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, sep } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fetchAndRestore } from "../src/cache/fetch.js";
import { narInfoKey, narKey } from "../src/cache/layout.js";
import { readNarInfo, streamVerifiedNar } from "../src/cache/read.js";
import { type ProblemKind, verifyCache } from "../src/cache/verify.js";
import { ZstdFrameCompressor } from "../src/cache/zstd.js";
import { InputError, OperationError } from "../src/errors.js";
import { Sha256 } from "../src/nix/hash.js";
import { parseSecretKey, publicKeyOf, type SecretKey, signDetached } from "../src/nix/keys.js";
import { buildNar, type NarToken, narNode, narString } from "../src/nix/nar-write.js";
import {
  type Compression,
  checkNarInfoSignatures,
  fingerprint,
  formatNarInfo,
  NARINFO_KEYS,
  type NarInfo,
  parseNarInfo,
  signNarInfo,
} from "../src/nix/narinfo.js";
import { makeStorePath, type StorePath } from "../src/nix/store-path.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { mapLimit } from "../src/util/pool.js";
import { nixStoreDump } from "../support/cli.js";

/** Fixed, so a failing case is the same case on every run (override to explore other seeds). */
const SEED = Number(process.env.NIXSHIP_FUZZ_SEED ?? 0x13c0ffee);
const CASES_PER_FAMILY = 200;
/** A bound on one case (all its reads together), so a hang fails the case instead of the run. */
const CASE_BOUND_MS = 10_000;
/** Resident memory this test process may reach: the NARs are ~1.3 MB, so this is slack, not a fit. */
const RSS_BOUND_BYTES = 400 * 1024 * 1024;
/** What the CLI reports for an error that is not a NixshipError (reportError in src/cli/main.ts). */
const INTERNAL_CODE = "internal";
/** The problem kinds verify may report (ProblemKind in src/cache/verify.ts). */
const PROBLEM_KINDS: readonly ProblemKind[] = [
  "missing",
  "bad-narinfo",
  "signature",
  "nar-missing",
  "file-mismatch",
  "nar-mismatch",
  "bad-compression",
  "error",
];
const KEY_NAME = "fuzz-1";
const STORE = "/nix/store/";
const baseNameOf = (path: string) => path.slice(STORE.length);
const hashPartOf = (path: string) => baseNameOf(path).slice(0, 32);
/** Names fetch and restore give their staging, and the fs store its temp files. */
const STAGING_NAME = /\.nixship-(?:tmp|fetch)-|^\.staging\.nixship-tmp-/;

// ---------------------------------------------------------------------------------------------
// Deterministic randomness.

/** mulberry32: tiny, fast and good enough to pick mutations reproducibly. */
class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Buffer {
    return Buffer.from(Array.from({ length: n }, () => this.int(256)));
  }
}

/** Each case has its own stream, so case N can be replayed without the N-1 before it. */
function caseRng(family: "nar" | "narinfo", index: number): Rng {
  const salt = family === "nar" ? 0x0 : 0x5bd1e995;
  return new Rng((SEED ^ Math.imul(index + 1, 0x9e3779b1) ^ salt) >>> 0);
}

// ---------------------------------------------------------------------------------------------
// The signed cache every case starts from: a directory NAR (zstd) that references a one-file
// NAR (uncompressed). The directory holds a file over 1 MiB, so fetch's 1 MiB stream buffer
// fills and backpressure between the verifier and the restore is part of every full read.

interface PathFixture {
  readonly path: StorePath;
  readonly hashPart: string;
  readonly nar: Buffer;
  /** The stored NAR file (compressed as `info.compression`). */
  readonly file: Buffer;
  readonly info: NarInfo;
  readonly narinfoText: string;
}

interface Fixture {
  readonly key: SecretKey;
  /** Valid signatures that must not be trusted: another key name, and our name on another key. */
  readonly strangers: readonly SecretKey[];
  readonly root: PathFixture;
  readonly dep: PathFixture;
  readonly pristine: string;
}

/** PKCS#8 DER header of an ed25519 private key; the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** A Nix secret key from a fixed seed, so signatures (and hence mutated Sig lines) repeat. */
function deterministicKey(name: string, seed: Buffer): SecretKey {
  const privateKey = createPrivateKey({
    key: Buffer.concat([ED25519_PKCS8_PREFIX, seed]),
    format: "der",
    type: "pkcs8",
  });
  const pub = Buffer.from(privateKey.export({ format: "jwk" }).x as string, "base64url");
  return parseSecretKey(`${name}:${Buffer.concat([seed, pub]).toString("base64")}`);
}

/** zstd as nixship's push writes it (in-process: a child per case would dominate the run). */
function zstd(data: Buffer): Buffer {
  return Buffer.from(new ZstdFrameCompressor(3).compress(data));
}

function bigFileContents(): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < 1.25 * 1024 * 1024; i++) {
    const line = `${i.toString(36)} the quick brown fox ${(i * 7919) % 10007}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join(""));
}

function makePath(
  key: SecretKey,
  name: string,
  nar: Buffer,
  compression: Compression,
  references: readonly StorePath[],
  deriver: string | undefined,
): PathFixture {
  const narHash = Sha256.of(nar);
  const path = makeStorePath("output:out", narHash, name);
  const file = compression === "zstd" ? zstd(nar) : nar;
  const fileHash = Sha256.of(file);
  const info = signNarInfo(
    {
      storePath: path,
      url: narKey(fileHash, compression),
      compression,
      fileHash,
      fileSize: file.length,
      narHash,
      narSize: nar.length,
      references,
      deriver,
      sigs: [],
      ca: undefined,
    },
    key,
  );
  return { path, hashPart: hashPartOf(path), nar, file, info, narinfoText: formatNarInfo(info) };
}

async function makeFixture(base: string): Promise<Fixture> {
  const seeds = new Rng(SEED);
  const key = deterministicKey(KEY_NAME, seeds.bytes(32));
  const strangers = [
    deterministicKey("stranger-1", seeds.bytes(32)),
    deterministicKey(KEY_NAME, seeds.bytes(32)),
  ];
  const dep = makePath(
    key,
    "fuzz-dep",
    buildNar(narNode.regular("dep data\n")),
    "none",
    [],
    undefined,
  );
  // Entries in byte order of their names, as a valid NAR must have them.
  const rootTree = narNode.directory([
    ["big", narNode.regular(bigFileContents())],
    ["bin", narNode.directory([["hello", narNode.regular("#!/bin/sh\necho hi\n", true)]])],
    ["deps", narNode.regular(`${dep.path}\n`)],
    ["empty", narNode.regular("")],
    ["link", narNode.symlink("big")],
    ["nested", narNode.directory([["a", narNode.directory([["b", narNode.regular("deep")]])]])],
  ]);
  const deriver = baseNameOf(makeStorePath("text", Sha256.of("fuzz"), "fuzz-root.drv"));
  const root = makePath(key, "fuzz-root", buildNar(rootTree), "zstd", [dep.path], deriver);
  const pristine = join(base, "pristine");
  await mkdir(join(pristine, "nar"), { recursive: true });
  await writeFile(join(pristine, "nix-cache-info"), "StoreDir: /nix/store\n");
  for (const p of [dep, root]) {
    await writeFile(join(pristine, p.info.url), p.file);
    await writeFile(join(pristine, narInfoKey(p.path)), p.narinfoText);
  }
  return { key, strangers, root, dep, pristine };
}

// ---------------------------------------------------------------------------------------------
// Mutations. Each returns the mutated bytes and says what it did, so a failure names its input.

interface Mutated {
  readonly bytes: Buffer;
  readonly what: string;
}

/** [start, end) of each str() token of a NAR (length field through padding), as far as it parses. */
function tokenSpans(nar: Buffer): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  let at = 0;
  while (at + 8 <= nar.length) {
    const len = nar.readBigUInt64LE(at);
    if (len > BigInt(nar.length)) break;
    const end = at + 8 + Number(len) + ((8 - (Number(len) % 8)) % 8);
    if (end > nar.length) break;
    spans.push([at, end]);
    at = end;
  }
  return spans;
}

/** A byte position, mostly near token starts: uniform positions would nearly all fall in "big". */
function pickPosition(rng: Rng, data: Buffer, spans: ReadonlyArray<[number, number]>): number {
  if (spans.length > 0 && rng.chance(0.75)) {
    const [start, end] = rng.pick(spans);
    return Math.min(data.length, start + rng.int(Math.min(24, end - start) + 1));
  }
  return rng.int(data.length + 1);
}

const splice = (data: Buffer, at: number, remove: number, insert: Buffer = Buffer.alloc(0)) =>
  Buffer.concat([data.subarray(0, at), insert, data.subarray(at + remove)]);

const LENGTH_VALUES: ReadonlyArray<[string, bigint]> = [
  ["0", 0n],
  ["1", 1n],
  ["7", 7n],
  ["2^31", 2n ** 31n],
  ["2^32", 2n ** 32n],
  ["2^53-1", 2n ** 53n - 1n],
  ["2^53", 2n ** 53n],
  ["2^63", 2n ** 63n],
  ["2^64-1", 2n ** 64n - 1n],
];

/** Tokens a NAR may hold in the wrong place, and names and targets no NAR may hold. */
const NAR_WORDS: readonly NarToken[] = [
  ..."( ) type regular directory symlink entry name node contents executable target".split(" "),
  ..."nix-archive-1 nix-archive-2 fifo . .. a/b / ../../../escape /etc/passwd big zzz".split(" "),
  "",
  "x\0y",
  "a".repeat(255),
  "a".repeat(256),
  Buffer.from([0xff, 0xfe, 0x80]),
];

/** Byte-level mutations, for any bytes (a NAR, a compressed NAR, a narinfo). */
function mutateBytes(rng: Rng, data: Buffer, spans: ReadonlyArray<[number, number]> = []): Mutated {
  const at = pickPosition(rng, data, spans);
  switch (rng.int(6)) {
    case 0: {
      const flips: string[] = [];
      let out = Buffer.from(data);
      for (let n = 1 + rng.int(3); n > 0 && out.length > 0; n--) {
        const byte = Math.min(pickPosition(rng, out, spans), out.length - 1);
        const bit = rng.int(8);
        out = Buffer.from(out);
        out[byte] = (out[byte] as number) ^ (1 << bit);
        flips.push(`bit ${bit} of byte ${byte}`);
      }
      return { bytes: out, what: `flip ${flips.join(", ")}` };
    }
    case 1: {
      const insert = rng.chance(0.5) ? Buffer.alloc(1 + rng.int(16)) : rng.bytes(1 + rng.int(16));
      return {
        bytes: splice(data, at, 0, insert),
        what: `insert ${insert.toString("hex")} at byte ${at}`,
      };
    }
    case 2: {
      const n = 1 + rng.int(16);
      return { bytes: splice(data, at, n), what: `delete ${n} bytes at byte ${at}` };
    }
    case 3:
      return { bytes: data.subarray(0, at), what: `truncate to ${at} bytes` };
    case 4: {
      const from = pickPosition(rng, data, spans);
      const to = Math.min(data.length, from + 1 + rng.int(64));
      const dest = pickPosition(rng, data, spans);
      return {
        bytes: splice(data, dest, 0, data.subarray(from, to)),
        what: `copy bytes ${from}..${to} to byte ${dest}`,
      };
    }
    default: {
      const tail = rng.chance(0.5) ? rng.bytes(1 + rng.int(24)) : narString("entry");
      return { bytes: Buffer.concat([data, tail]), what: `append ${tail.toString("hex")}` };
    }
  }
}

/** Mutations that keep the NAR's framing and change its grammar, plus byte-level ones. */
function mutateNarOnce(rng: Rng, nar: Buffer): Mutated {
  const spans = tokenSpans(nar);
  if (spans.length < 2) return mutateBytes(rng, nar, spans);
  const token = rng.int(spans.length);
  const [start, end] = spans[token] as [number, number];
  switch (rng.int(10)) {
    case 0: {
      const [label, value] = rng.chance(0.7)
        ? rng.pick(LENGTH_VALUES)
        : (() => {
            const len = Number(nar.readBigUInt64LE(start));
            const v = BigInt(Math.max(0, len + rng.pick([-9, -8, -1, 1, 8, 9, 4096])));
            return [String(v), v] as [string, bigint];
          })();
      const out = Buffer.from(nar);
      out.writeBigUInt64LE(value, start);
      return { bytes: out, what: `set the length of token ${token} (byte ${start}) to ${label}` };
    }
    case 1: {
      const word = rng.pick(NAR_WORDS);
      const shown =
        typeof word === "string" ? JSON.stringify(word.slice(0, 40)) : "<non-UTF-8 bytes>";
      return {
        bytes: splice(nar, start, end - start, narString(word as string | Uint8Array)),
        what: `replace token ${token} (byte ${start}) with ${shown}`,
      };
    }
    case 2: {
      const other = rng.int(spans.length);
      const [a, b] = [Math.min(token, other), Math.max(token, other)];
      const [aStart, aEnd] = spans[a] as [number, number];
      const [bStart, bEnd] = spans[b] as [number, number];
      const bytes = Buffer.concat([
        nar.subarray(0, aStart),
        nar.subarray(bStart, bEnd),
        nar.subarray(aEnd, bStart),
        nar.subarray(aStart, aEnd),
        nar.subarray(bEnd),
      ]);
      return { bytes, what: `swap tokens ${a} and ${b}` };
    }
    case 3: {
      const last = Math.min(spans.length - 1, token + rng.int(8));
      const region = nar.subarray(start, (spans[last] as [number, number])[1]);
      const dest = (rng.pick(spans) as [number, number])[rng.int(2)];
      return {
        bytes: splice(nar, dest, 0, region),
        what: `copy tokens ${token}..${last} to byte ${dest}`,
      };
    }
    case 4: {
      const last = Math.min(spans.length - 1, token + rng.int(4));
      const stop = (spans[last] as [number, number])[1];
      return { bytes: splice(nar, start, stop - start), what: `delete tokens ${token}..${last}` };
    }
    case 5: {
      // Non-zero padding: a token whose length is not a multiple of 8 has padding to spoil.
      const padded = spans.filter(([s, e]) => e - s - 8 > Number(nar.readBigUInt64LE(s)));
      if (padded.length === 0) return mutateBytes(rng, nar, spans);
      const [, e] = rng.pick(padded);
      const out = Buffer.from(nar);
      out[e - 1] = 1 + rng.int(255);
      return { bytes: out, what: `set the last padding byte before byte ${e} to ${out[e - 1]}` };
    }
    default:
      return mutateBytes(rng, nar, spans);
  }
}

function repeatMutation(
  rng: Rng,
  data: Buffer,
  once: (rng: Rng, data: Buffer) => Mutated,
): Mutated {
  let bytes = data;
  const steps: string[] = [];
  for (let n = rng.chance(0.7) ? 1 : 2 + rng.int(2); n > 0; n--) {
    const m = once(rng, bytes);
    bytes = m.bytes;
    steps.push(m.what);
  }
  return { bytes, what: steps.join("; ") };
}

// --- narinfo text, as lines of bytes (a mutation may put anything in them, non-UTF-8 too) ---

function lines(text: Buffer): { lines: Buffer[]; final: boolean } {
  const parts: Buffer[] = [];
  let at = 0;
  for (let nl = text.indexOf(10); nl !== -1; nl = text.indexOf(10, at)) {
    parts.push(text.subarray(at, nl));
    at = nl + 1;
  }
  const final = at === text.length;
  if (!final) parts.push(text.subarray(at));
  return { lines: parts, final };
}

function unlines(parts: readonly Buffer[], final: boolean): Buffer {
  const joined = Buffer.concat(parts.flatMap((l, i) => (i === 0 ? [l] : [Buffer.from("\n"), l])));
  return final && parts.length > 0 ? Buffer.concat([joined, Buffer.from("\n")]) : joined;
}

const FIELDS = NARINFO_KEYS;
type Field = (typeof FIELDS)[number];

const HUGE_NUMBERS = [
  ..."0 -1 +5 012 1e9 0x10 9007199254740991 9007199254740992 ١٢".split(" "),
  ..."18446744073709551615 18446744073709551616".split(" "),
  " 5",
  "5 ",
  "",
  "9".repeat(40),
  "1".repeat(5000),
];

function randomHash(rng: Rng): Sha256 {
  return new Sha256(rng.bytes(32));
}

/** A new value for a field: plausible, borderline and hostile ones. */
function fieldValue(rng: Rng, fx: Fixture, own: PathFixture, field: Field): string {
  const other = own === fx.root ? fx.dep : fx.root;
  const base = (p: PathFixture) => baseNameOf(p.path);
  switch (field) {
    case "NarSize":
    case "FileSize": {
      const current = field === "NarSize" ? own.nar.length : own.file.length;
      return rng.chance(0.6)
        ? rng.pick(HUGE_NUMBERS)
        : String(
            rng.pick([
              current - 1,
              current + 1,
              current + 8,
              other.nar.length,
              other.file.length,
              1,
            ]),
          );
    }
    case "NarHash":
    case "FileHash": {
      const current = field === "NarHash" ? own.info.narHash : (own.info.fileHash as Sha256);
      return rng.pick([
        () => randomHash(rng).format("nix32"),
        () => current.format(rng.pick(["hex", "base64", "sri"] as const)),
        () => current.format("nix32").slice(0, -1),
        () => `${current.format("nix32").slice(0, -1)}e`,
        () => `md5:${rng.bytes(16).toString("hex")}`,
        () => `sha512:${rng.bytes(64).toString("hex")}`,
        () => "sha256:",
        () =>
          (field === "NarHash" ? (own.info.fileHash as Sha256) : own.info.narHash).format("nix32"),
        () => other.info.narHash.format("nix32"),
        () => `sha256:${"0".repeat(52)}`,
      ])();
    }
    case "URL":
      return rng.pick([
        ..."../outside.nar /etc/passwd nar/../../outside nar//x.nar ./nar/x.nar".split(" "),
        ..."nar/./x.nar nar\\x.nar %2e%2e/x nar nar/ nix-cache-info".split(" "),
        `${own.hashPart}.narinfo`,
        `${other.hashPart}.narinfo`,
        other.info.url,
        own.info.url.replace(".nar", ".nar.xz"),
        `nar/.${own.info.url.slice(4)}.nixship-tmp-00ff`,
        `nar/${"a".repeat(2000)}.nar`,
        "nar/x\u0001.nar",
        "nar/é.nar",
        "s3://elsewhere/nar/x.nar",
      ]);
    case "Compression":
      return rng.pick(["zstd", "xz", "bzip2", "none", "gzip", "", "ZSTD", "zstd ", "br"]);
    case "References": {
      const ghost = baseNameOf(makeStorePath("output:out", randomHash(rng), "ghost"));
      return rng.pick([
        "",
        `${base(fx.dep)} ${ghost}`,
        ghost,
        base(own),
        `${base(fx.dep)} ${base(fx.dep)}`,
        `${base(fx.dep)}  ${base(fx.root)}`,
        `${base(fx.dep)} `,
        "not-a-store-path",
        fx.dep.path,
        `${fx.dep.hashPart}-${"n".repeat(212)}`,
        `${fx.dep.hashPart}-..`,
        Array.from({ length: 100 }, (_, i) =>
          baseNameOf(makeStorePath("output:out", Sha256.of(String(i)), "many")),
        ).join(" "),
      ]);
    }
    case "Sig": {
      const fp = fingerprint(own.info);
      return rng.pick([
        () => "garbage",
        () => "",
        () => `${KEY_NAME}:`,
        () => `:${signDetached(fx.key, fp).split(":")[1]}`,
        () => `${KEY_NAME}:${rng.bytes(63).toString("base64")}`,
        () => `${KEY_NAME}:${rng.bytes(64).toString("base64")}`,
        () => `${KEY_NAME}:${signDetached(fx.key, fp).split(":")[1]?.slice(0, -2)}`,
        () => signDetached(rng.pick(fx.strangers), fp),
        () => signDetached(fx.key, fingerprint(other.info)),
        () => `${KEY_NAME}:${"A".repeat(100_000)}`,
      ])();
    }
    case "StorePath":
      return rng.pick([
        other.path,
        `${own.path}x`,
        own.path.replace("fuzz-", "other-"),
        `/nix/store/${own.hashPart}-`,
        `/nix/store/${own.hashPart}`,
        `/gnu/store/${base(own)}`,
        own.path.slice(0, 20),
        `${own.path}/sub`,
      ]);
    case "Deriver":
      return rng.pick(["", "../x.drv", `${own.hashPart}-fuzz.drv`, "garbage"]);
    case "CA":
      return rng.pick(["", "fixed:r:sha256:garbage", "text:sha256:x"]);
  }
}

function linesWithKey(parts: readonly Buffer[], field: string): number[] {
  const prefix = Buffer.from(`${field}: `);
  return parts.flatMap((l, i) => (l.subarray(0, prefix.length).equals(prefix) ? [i] : []));
}

/** Bytes that are not UTF-8 (lone lead and continuation bytes, an overlong form, a surrogate), and NUL. */
const STRANGE_BYTES = [
  [0xff],
  [0xc3],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xe2, 0x82],
  [0x00],
];

function mutateNarInfoOnce(rng: Rng, fx: Fixture, own: PathFixture, text: Buffer): Mutated {
  const { lines: parts, final } = lines(text);
  const line = rng.int(Math.max(1, parts.length));
  const done = (next: Buffer[], what: string, end = final): Mutated => ({
    bytes: unlines(next, end),
    what,
  });
  switch (rng.int(12)) {
    case 0:
      return done(
        parts.filter((_, i) => i !== line),
        `delete line ${line + 1}`,
      );
    case 1: {
      const next = [...parts];
      next.splice(rng.int(parts.length + 1), 0, parts[line] ?? Buffer.alloc(0));
      return done(next, `duplicate line ${line + 1}`);
    }
    case 2: {
      const other = rng.int(Math.max(1, parts.length));
      const next = [...parts];
      [next[line], next[other]] = [parts[other] as Buffer, parts[line] as Buffer];
      return done(next, `swap lines ${line + 1} and ${other + 1}`);
    }
    case 3:
    case 4:
    case 5: {
      const field = rng.pick(FIELDS);
      const value = fieldValue(rng, fx, own, field);
      const next = [...parts];
      const newLine = Buffer.from(`${field}: ${value}`);
      const at = linesWithKey(parts, field);
      if (at.length > 0 && !(field === "Sig" && rng.chance(0.3))) next[at[0] as number] = newLine;
      else next.push(newLine);
      return done(next, `set ${field} to ${JSON.stringify(value.slice(0, 80))}`);
    }
    case 6: {
      const field = rng.pick(FIELDS);
      return done(
        parts.filter((_, i) => !linesWithKey(parts, field).includes(i)),
        `remove ${field}`,
      );
    }
    case 7: {
      const garbage = rng.pick([
        Buffer.from("NoColonHere"),
        Buffer.from(": no key"),
        Buffer.from("Key:novalue"),
        Buffer.from("X-Fuzz: unknown keys are ignored"),
        Buffer.from("NarSize : 5"),
        Buffer.from("narsize: 5"),
        Buffer.from("\r"),
        Buffer.alloc(100_000, "a"),
        Buffer.concat([Buffer.from("X-Bytes: "), rng.bytes(32)]),
        rng.bytes(1 + rng.int(40)),
      ]);
      const next = [...parts];
      next.splice(rng.int(parts.length + 1), 0, garbage);
      return done(
        next,
        `insert the line ${JSON.stringify(garbage.toString("latin1").slice(0, 40))}`,
      );
    }
    case 8: {
      const bad = Buffer.from(rng.pick(STRANGE_BYTES));
      const at = rng.int(text.length + 1);
      return {
        bytes: splice(text, at, rng.int(2), bad),
        what: `put bytes ${bad.toString("hex")} at byte ${at}`,
      };
    }
    case 9:
      return done(
        parts.map((l) => Buffer.concat([l, Buffer.from("\r")])),
        "end lines in CRLF",
      );
    case 10:
      return done(parts, "drop the final newline", false);
    default:
      return mutateBytes(rng, text);
  }
}

// ---------------------------------------------------------------------------------------------
// Cases: what to write into a fresh copy of the pristine cache.

interface Case {
  /** The case's directory name. */
  readonly name: string;
  readonly label: string;
  /** Files to (over)write, by path relative to the cache root. */
  readonly files: ReadonlyMap<string, Buffer>;
  /** The paths whose narinfo or NAR the case changed (the others are as in the pristine cache). */
  readonly changed: readonly StorePath[];
}

function narCase(fx: Fixture, index: number): Case {
  const rng = caseRng("nar", index);
  const own = rng.chance(0.8) ? fx.root : fx.dep;
  const resign = rng.chance(0.5);
  const storage = rng.pick([
    "none",
    "none",
    "zstd",
    "zstd",
    "in-place",
    "compressed-bytes",
  ] as const);
  let nar: Buffer | undefined;
  let file: Buffer;
  let what: string;
  if (storage === "compressed-bytes") {
    const m = repeatMutation(
      rng,
      own.info.compression === "zstd" ? own.file : zstd(own.nar),
      (r, d) => mutateBytes(r, d),
    );
    file = m.bytes;
    what = `zstd file: ${m.what}`;
    const unpacked = spawnSync("zstd", ["-q", "-d", "-c"], { input: file, maxBuffer: 64 << 20 });
    if (unpacked.status === 0) nar = unpacked.stdout;
  } else {
    const m = repeatMutation(rng, own.nar, mutateNarOnce);
    nar = m.bytes;
    what = m.what;
    const zstdFile =
      storage === "zstd" || (storage === "in-place" && own.info.compression === "zstd");
    file = zstdFile ? zstd(nar) : nar;
  }
  const compression: Compression =
    storage === "none" || (storage === "in-place" && own.info.compression === "none")
      ? "none"
      : "zstd";
  // The attacker may rewrite the unsigned fields (URL, FileHash, FileSize) to fit the new
  // file; "in-place" leaves them stale, so FileSize and FileHash are what must catch it.
  const fileHash = Sha256.of(file);
  const moved: NarInfo =
    storage === "in-place"
      ? own.info
      : {
          ...own.info,
          url: narKey(fileHash, compression),
          compression,
          fileHash,
          fileSize: file.length,
        };
  const info =
    resign && nar !== undefined
      ? signNarInfo({ ...moved, narHash: Sha256.of(nar), narSize: nar.length, sigs: [] }, fx.key)
      : moved;
  const files = new Map<string, Buffer>([
    [info.url, file],
    [narInfoKey(own.path), Buffer.from(formatNarInfo(info))],
  ]);
  const signedNote = resign && nar !== undefined ? ", re-signed" : "";
  const who = own === fx.root ? "root" : "dep";
  return {
    name: `nar-${index}`,
    label: `nar #${index} [${who}, ${storage}${signedNote}]: ${what}`,
    files,
    changed: [own.path],
  };
}

/** Re-signs narinfo bytes that parse, with the trusted key, replacing their Sig lines. */
function resignText(fx: Fixture, text: Buffer): Buffer | undefined {
  let info: NarInfo;
  try {
    info = parseNarInfo(text.toString("utf8"));
  } catch {
    return undefined;
  }
  const { lines: parts, final } = lines(text);
  const kept = parts.filter((_, i) => !linesWithKey(parts, "Sig").includes(i));
  return unlines([...kept, Buffer.from(`Sig: ${signDetached(fx.key, fingerprint(info))}`)], final);
}

function narInfoCase(fx: Fixture, index: number): Case {
  const rng = caseRng("narinfo", index);
  const own = rng.chance(0.75) ? fx.root : fx.dep;
  const resign = rng.chance(0.5);
  const m = repeatMutation(rng, Buffer.from(own.narinfoText), (r, d) =>
    mutateNarInfoOnce(r, fx, own, d),
  );
  const resigned = resign ? resignText(fx, m.bytes) : undefined;
  const who = own === fx.root ? "root" : "dep";
  const note = resigned ? ", re-signed" : "";
  return {
    name: `narinfo-${index}`,
    label: `narinfo #${index} [${who}${note}]: ${m.what}`,
    files: new Map([[narInfoKey(own.path), resigned ?? m.bytes]]),
    changed: [own.path],
  };
}

// ---------------------------------------------------------------------------------------------
// The oracle: the test's own reading of a narinfo and of the NAR it names. Lax about syntax
// (it is consulted only when nixship accepted something), strict about what is trusted.

interface Reading {
  readonly storePath: string;
  readonly url: string;
  readonly compression: string;
  readonly fileHash: Buffer | undefined;
  readonly fileSize: number | undefined;
  readonly narHash: Buffer;
  readonly narSize: number;
  readonly references: readonly string[];
  readonly trusted: boolean;
}

const NIX32 = "[0-9a-df-np-sv-z]";
const STORE_PATH = new RegExp(`^/nix/store/${NIX32}{32}-[0-9A-Za-z+\\-._?=]+$`);

function readIndependently(fx: Fixture, cache: string, hashPart: string): Reading | undefined {
  let text: string;
  try {
    text = readFileSync(join(cache, `${hashPart}.narinfo`), "utf8");
  } catch {
    return undefined;
  }
  if (!text.endsWith("\n")) return undefined;
  const fields = new Map<string, string>();
  const sigs: string[] = [];
  for (const line of text.slice(0, -1).split("\n")) {
    const colon = line.indexOf(": ");
    if (colon <= 0) return undefined;
    const [k, v] = [line.slice(0, colon), line.slice(colon + 2)];
    if (k === "Sig") sigs.push(v);
    else if (fields.has(k)) return undefined;
    else fields.set(k, v);
  }
  const hash = (v: string | undefined) => {
    if (v === undefined) return undefined;
    try {
      return Buffer.from(Sha256.parse(v).bytes);
    } catch {
      return null;
    }
  };
  const size = (v: string | undefined) =>
    v === undefined
      ? undefined
      : /^\d+$/.test(v) && Number.isSafeInteger(Number(v))
        ? Number(v)
        : null;
  const storePath = fields.get("StorePath") ?? "";
  const url = fields.get("URL") ?? "";
  const narHash = hash(fields.get("NarHash"));
  const narSize = size(fields.get("NarSize"));
  const fileHash = hash(fields.get("FileHash"));
  const fileSize = size(fields.get("FileSize"));
  const refsText = fields.get("References") ?? "";
  const references = refsText === "" ? [] : refsText.split(" ");
  if (
    !STORE_PATH.test(storePath) ||
    url === "" ||
    !narHash ||
    !narSize ||
    fileHash === null ||
    fileSize === null ||
    references.some((r) => !STORE_PATH.test(`/nix/store/${r}`))
  ) {
    return undefined;
  }
  const refs = references.map((r) => `/nix/store/${r}`).sort();
  const fp = `1;${storePath};${new Sha256(narHash).format("nix32")};${narSize};${refs.join(",")}`;
  const pub = publicKeyOf(fx.key).key;
  const trusted = sigs.some((sig) => {
    const [name, body] = [sig.slice(0, sig.indexOf(":")), sig.slice(sig.indexOf(":") + 1)];
    const bytes = Buffer.from(body, "base64");
    return (
      name === KEY_NAME && bytes.length === 64 && verifySignature(null, Buffer.from(fp), pub, bytes)
    );
  });
  return {
    storePath,
    url,
    compression: fields.get("Compression") ?? "bzip2",
    fileHash,
    fileSize,
    narHash,
    narSize,
    references: refs,
    trusted,
  };
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest();

/** Whether the file the narinfo names is what it says: FileHash/FileSize, then NarHash/NarSize. */
function contentMatches(cache: string, r: Reading): boolean {
  const file = join(cache, ...r.url.split("/"));
  if (!file.startsWith(cache + sep)) return false;
  let data: Buffer;
  try {
    if (!lstatSync(file).isFile()) return false;
    data = readFileSync(file);
  } catch {
    return false;
  }
  if (r.fileSize !== undefined && data.length !== r.fileSize) return false;
  if (r.fileHash !== undefined && !sha256(data).equals(r.fileHash)) return false;
  let nar = data;
  if (r.compression !== "none") {
    const command = { zstd: "zstd", xz: "xz", bzip2: "bzip2" }[r.compression];
    if (command === undefined) return false;
    const out = spawnSync(command, ["-q", "-d", "-c"], { input: data, maxBuffer: 64 << 20 });
    if (out.status !== 0) return false;
    nar = out.stdout;
  }
  return nar.length === r.narSize && sha256(nar).equals(r.narHash);
}

/** Whether the narinfo read as `r` describes `start`: a full store path, or a bare hash part. */
function describes(r: Reading, start: string): boolean {
  return start.startsWith("/") ? r.storePath === start : hashPartOf(r.storePath) === start;
}

/**
 * Whether `start` (a store path, or a hash part as a whole-cache verify names them) and its
 * closure are genuinely valid in `cache`: every narinfo present, describing the path asked
 * for and signed by the test's key; with `content`, every NAR matching its narinfo.
 */
function closureValid(fx: Fixture, cache: string, start: string, content: boolean): boolean {
  const seen = new Set<string>();
  const todo = [start];
  while (todo.length > 0) {
    const p = todo.pop() as string;
    if (seen.has(p)) continue;
    seen.add(p);
    const r = readIndependently(fx, cache, p.startsWith("/") ? hashPartOf(p) : p);
    if (!r || !describes(r, p) || !r.trusted || (content && !contentMatches(cache, r)))
      return false;
    todo.push(...r.references);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Running a case.

class CaseTimeout extends Error {}

/** Settles `work`, or fails it once the case's deadline passes (a bound, not a speed check). */
async function bounded<T>(
  deadline: number,
  work: Promise<T>,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new CaseTimeout(`did not finish within ${CASE_BOUND_MS} ms`)),
      Math.max(0, deadline - Date.now()),
    );
  });
  try {
    return { ok: true, value: await Promise.race([work, expired]) };
  } catch (error) {
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}

/** Every entry under `dir` (links not followed): type, mode, size and content hash. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      const r = rel === "" ? name : `${rel}/${name}`;
      const st = lstatSync(join(dir, r));
      const what = st.isDirectory()
        ? "dir"
        : st.isSymbolicLink()
          ? `link ${readlinkSync(join(dir, r))}`
          : `file ${st.size} ${sha256(readFileSync(join(dir, r))).toString("hex")}`;
      out.set(r, `${(st.mode & 0o7777).toString(8)} ${what}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk("");
  return out;
}

const discard = () => new Writable({ write: (_chunk, _enc, done) => done() });

/** Reads a path as verify does (narinfo, then NAR), but leaves its errors as thrown. */
async function readDirectly(store: ObjectStore, fx: Fixture, pathOrHash: string) {
  const info = await readNarInfo(store, pathOrHash);
  if (!info) return { found: false, signed: false };
  const signed = checkNarInfoSignatures(info, [publicKeyOf(fx.key)]).ok;
  await streamVerifiedNar(store, info, discard());
  return { found: true, signed };
}

interface CaseResult {
  readonly violations: string[];
  readonly codes: string[];
  readonly fetched: boolean;
  readonly verified: boolean;
}

async function runCase(fx: Fixture, casesDir: string, c: Case, index: number): Promise<CaseResult> {
  const violations: string[] = [];
  const codes: string[] = [];
  const fail = (msg: string) => violations.push(`${c.label}\n    ${msg}`);
  const caseDir = join(casesDir, c.name);
  const cache = join(caseDir, "cache");
  const out = join(caseDir, "out");
  const target = join(out, "restored");
  await cp(fx.pristine, cache, { recursive: true });
  await mkdir(out);
  for (const [rel, bytes] of c.files) {
    await mkdir(dirname(join(cache, rel)), { recursive: true });
    await writeFile(join(cache, rel), bytes);
  }
  const before = snapshot(caseDir);
  const deadline = Date.now() + CASE_BOUND_MS;

  const checkError = (op: string, err: unknown) => {
    if (err instanceof CaseTimeout) {
      fail(`${op} ${err.message}`);
      return;
    }
    if (!(err instanceof InputError || err instanceof OperationError)) {
      const shown = err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err);
      fail(
        `${op} threw ${shown} (not an InputError/OperationError: the CLI reports it as "${INTERNAL_CODE}")`,
      );
      return;
    }
    codes.push(err.code);
    if (err.code === INTERNAL_CODE) fail(`${op} threw the internal code: ${err.message}`);
    if (err.message.trim() === "") fail(`${op} threw ${err.code} with an empty message`);
    if (/\bundefined\b|\[object |\bNaN\b/.test(err.message))
      fail(`${op}: unclear message: ${err.message}`);
    if (/bug in nixship/i.test(err.hint ?? "")) fail(`${op}: the hint calls it a bug: ${err.hint}`);
  };

  const store = await openStore(`file://${cache}`);
  try {
    // Every other case verifies the whole cache, which names paths by the hash parts of its
    // narinfos' keys; the others verify the root's closure, named by full store paths.
    const whole = index % 2 === 1;
    const address = (p: PathFixture) => (whole ? p.hashPart : p.path);

    // 1. The narinfo and NAR reads that verify is made of, with their errors as thrown; a
    // path the case did not change reads as in the pristine case.
    const readOk = new Map<string, boolean>();
    for (const p of [fx.root, fx.dep]) {
      if (!c.changed.includes(p.path)) continue;
      const r = await bounded(deadline, readDirectly(store, fx, address(p)));
      readOk.set(address(p), r.ok && r.value.found && r.value.signed);
      if (!r.ok) {
        checkError(`reading ${address(p)}`, r.error);
        continue;
      }
      if (!r.value.found) {
        fail(`reading ${address(p)}: its narinfo was reported absent, but it is there`);
        continue;
      }
      const reading = readIndependently(fx, cache, p.hashPart);
      if (!reading || !describes(reading, address(p)) || !contentMatches(cache, reading))
        fail(`reading ${address(p)} succeeded, but its NAR is not what its narinfo says`);
      else if (r.value.signed && !reading.trusted)
        fail(`${address(p)}: nixship took a signature as valid that the test's key did not make`);
    }

    // 2. verify.
    const starts = whole ? [fx.root.hashPart, fx.dep.hashPart] : [fx.root.path];
    const v = await bounded(
      deadline,
      verifyCache({
        store,
        trusted: [publicKeyOf(fx.key)],
        paths: whole ? [] : [fx.root.path],
        jobs: 2,
      }),
    );
    if (!v.ok) checkError("verify", v.error);
    else {
      for (const p of v.value.problems) {
        if (!PROBLEM_KINDS.includes(p.kind)) fail(`verify: unknown problem kind ${p.kind}`);
        if (p.message.trim() === "" || /\bundefined\b|\[object |\bNaN\b/.test(p.message))
          fail(`verify: unclear ${p.kind} message: ${JSON.stringify(p.message)}`);
      }
      if (v.value.problems.length === 0) {
        if (v.value.checked === 0) fail("verify checked nothing and reported no problem");
        for (const s of starts)
          if (!closureValid(fx, cache, s, true))
            fail(`verify passed ${s}, which is not genuinely valid`);
        if (starts.some((s) => readOk.get(s) === false))
          fail("verify reported no problem, but reading a path it checks failed");
      }
    }

    // 3. fetch --restore of the root into a directory that does not exist yet.
    const f = await bounded(
      deadline,
      fetchAndRestore({ store, trusted: [publicKeyOf(fx.key)] }, fx.root.path, target),
    );
    const fetched = f.ok;
    if (!f.ok) checkError("fetch --restore", f.error);
    else {
      const root = readIndependently(fx, cache, fx.root.hashPart);
      if (!root || !closureValid(fx, cache, fx.root.path, false)) {
        fail("fetch --restore succeeded, but the root's closure is not signed by the trusted key");
      } else {
        // Real Nix is the judge of what was restored: its NAR must be the one the key signed.
        const dumped = nixStoreDump(target);
        if (dumped.length !== root.narSize || !sha256(dumped).equals(root.narHash))
          fail(
            `fetch --restore restored a tree whose NAR (${dumped.length} bytes) is not the signed one`,
          );
      }
    }

    // 4. Nothing written but the restore target; no staging left anywhere in the case.
    const after = snapshot(caseDir);
    const inTarget = (rel: string) => rel === "out/restored" || rel.startsWith("out/restored/");
    for (const [rel, state] of after) {
      if (STAGING_NAME.test(rel)) fail(`left staging behind: ${rel}`);
      else if (inTarget(rel) ? !fetched : before.get(rel) !== state)
        fail(`${before.has(rel) ? "changed" : "created"} ${rel} (${state})`);
    }
    for (const rel of before.keys()) if (!after.has(rel)) fail(`removed ${rel}`);
    return { violations, codes, fetched, verified: v.ok && v.value.problems.length === 0 };
  } finally {
    await store.close();
    if (violations.length === 0) await rm(caseDir, { recursive: true, force: true });
    else keptCases.add(c.name);
  }
}

// ---------------------------------------------------------------------------------------------

let base: string;
let fx: Fixture;
let casesDir: string;
/** Directories of cases with violations, kept for a look at their input. */
const keptCases = new Set<string>();

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "nixship-fuzz-"));
  fx = await makeFixture(base);
  casesDir = join(base, "cases");
  await mkdir(casesDir);
});
afterAll(() => rm(base, { recursive: true, force: true }));

/** Cases run two at a time (the machine's cores); each has its own directory and store. */
const CONCURRENCY = 2;

async function runFamily(build: (fx: Fixture, index: number) => Case) {
  const indexes = Array.from({ length: CASES_PER_FAMILY }, (_, i) => i);
  let peakRss = 0;
  const results = await mapLimit(indexes, CONCURRENCY, async (i) => {
    const c = build(fx, i);
    const r = await runCase(fx, casesDir, c, i);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    return r;
  });
  const violations = results.flatMap((r) => r.violations);
  const codes = new Map<string, number>();
  for (const code of results.flatMap((r) => r.codes)) codes.set(code, (codes.get(code) ?? 0) + 1);
  // Only cases with violations keep their directory (for a look at their input); anything
  // else beside them, or beside the pristine cache, was written outside a case's directory.
  const stray = [
    ...(await readdir(casesDir)).filter((n) => !keptCases.has(n)),
    ...(await readdir(base)).filter((n) => n !== "cases" && n !== "pristine"),
  ];
  if (stray.length > 0) violations.push(`stray entries beside the cases: ${stray.join(", ")}`);
  const fetched = results.filter((r) => r.fetched).length;
  const verified = results.filter((r) => r.verified).length;
  return { violations, codes, fetched, verified, peakRss };
}

describe(`cache reads under a seeded fuzz (seed 0x${SEED.toString(16)})`, () => {
  it("the pristine cache reads, verifies (by path and whole) and restores cleanly", async () => {
    // Even and odd indexes verify by path and the whole cache; the oracle must agree too.
    for (const index of [0, 1]) {
      const pristine = {
        name: `pristine-${index}`,
        label: "pristine",
        files: new Map(),
        changed: [fx.root.path, fx.dep.path],
      };
      const r = await runCase(fx, casesDir, pristine, index);
      expect(r).toEqual({ violations: [], codes: [], fetched: true, verified: true });
    }
    expect(closureValid(fx, fx.pristine, fx.root.path, true)).toBe(true);
    expect(closureValid(fx, fx.pristine, fx.dep.hashPart, true)).toBe(true);
  });

  for (const [family, build] of [
    ["NARs", narCase],
    ["narinfos", narInfoCase],
  ] as const) {
    it(`${CASES_PER_FAMILY} mutated ${family}: a clear error, or success only on genuinely valid content`, async () => {
      const r = await runFamily(build);
      console.info(
        `fuzz ${family} (seed 0x${SEED.toString(16)}): ${r.verified} verified, ${r.fetched} restored, errors by code: ${JSON.stringify(Object.fromEntries([...r.codes].sort()))}, peak RSS ${Math.round(r.peakRss / 2 ** 20)} MB`,
      );
      expect(r.violations).toEqual([]);
      // The fuzz reaches both sides: some inputs are refused for several reasons, some pass.
      expect(r.codes.size).toBeGreaterThanOrEqual(3);
      expect(r.verified).toBeGreaterThan(0);
      expect(r.fetched).toBeGreaterThan(0);
      expect(r.peakRss).toBeLessThan(RSS_BOUND_BYTES);
    });
  }
});
