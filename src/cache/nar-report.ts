// The report `nixship push --nars-only --json` prints on a build host and the deployer reads:
// each stored NAR's narinfo, unsigned, and the paths the cache already had. Parsed strictly
// (exact keys and types, the NAR's key derived from its FileHash), since it comes from another
// machine; the deployer then checks it against that machine's Nix (commit-narinfos.ts).
import { OperationError } from "../errors.js";
import { Sha256 } from "../nix/hash.js";
import type { Compression, NarInfo } from "../nix/narinfo.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";
import { narKey } from "./layout.js";

export const NAR_REPORT_FORMAT = "nixship-nars-v1";
/** The most paths one report may describe: far more than any system's closure. */
export const NAR_REPORT_MAX_PATHS = 100_000;

export interface NarReport {
  readonly format: typeof NAR_REPORT_FORMAT;
  /** The NARs stored, each with the narinfo it would have had, unsigned. */
  readonly nars: readonly NarInfo[];
  /** The closure's paths whose narinfo the cache already had. */
  readonly present: readonly StorePath[];
}

/** The report as JSON: hashes in nix32 (`sha256:…`), references as full store paths. */
export function formatNarReport(nars: readonly NarInfo[], present: readonly StorePath[]) {
  return {
    format: NAR_REPORT_FORMAT,
    nars: nars.map((n) => ({
      storePath: n.storePath,
      url: n.url,
      compression: n.compression,
      fileHash: n.fileHash?.format("nix32") ?? null,
      fileSize: n.fileSize ?? null,
      narHash: n.narHash.format("nix32"),
      narSize: n.narSize,
      references: n.references,
      deriver: n.deriver ?? null,
      ca: n.ca ?? null,
    })),
    present,
  };
}

const NAR_KEYS = [
  "storePath",
  "url",
  "compression",
  "fileHash",
  "fileSize",
  "narHash",
  "narSize",
  "references",
  "deriver",
  "ca",
] as const;
const COMPRESSIONS: readonly string[] = ["zstd", "xz", "none"];

/** Parses what `source` (the build host, for messages) printed; anything else is refused. */
export function parseNarReport(text: string, source: string): NarReport {
  const fail = (why: string) =>
    new OperationError("build-host-bad-report", `${source} answered push --nars-only with ${why}`, {
      hint: `run the same nixship version on ${source} as on the deployer, or build without it (its closure is then copied back)`,
    });
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw fail("output that is not JSON");
  }
  const doc = record(data, "the report", fail);
  exactKeys(doc, ["format", "nars", "present", "summary"], "the report", fail, ["summary"]);
  if (doc.format !== NAR_REPORT_FORMAT) {
    throw fail(`format ${JSON.stringify(doc.format)}, not ${NAR_REPORT_FORMAT}`);
  }
  if (!Array.isArray(doc.nars) || !Array.isArray(doc.present)) {
    throw fail("nars or present that is not a list");
  }
  if (doc.nars.length + doc.present.length > NAR_REPORT_MAX_PATHS) {
    throw fail(`more than ${NAR_REPORT_MAX_PATHS} paths`);
  }
  const present = doc.present.map((p, i) => storePath(p, `present[${i}]`, fail));
  const nars = doc.nars.map((raw, i) => narInfo(raw, `nars[${i}]`, fail));
  const seen = new Set<string>();
  for (const path of [...nars.map((n) => n.storePath), ...present]) {
    if (seen.has(path)) throw fail(`${path} twice`);
    seen.add(path);
  }
  return { format: NAR_REPORT_FORMAT, nars, present };
}

type Fail = (why: string) => Error;

function narInfo(raw: unknown, where: string, fail: Fail): NarInfo {
  const n = record(raw, where, fail);
  exactKeys(n, NAR_KEYS, where, fail);
  const path = storePath(n.storePath, `${where}.storePath`, fail);
  if (typeof n.compression !== "string" || !COMPRESSIONS.includes(n.compression)) {
    throw fail(`${where}.compression ${JSON.stringify(n.compression)}`);
  }
  const compression = n.compression as Compression;
  const fileHash = hash(n.fileHash, `${where}.fileHash`, fail);
  const url = narKey(fileHash, compression);
  if (n.url !== url) throw fail(`${where}.url ${JSON.stringify(n.url)}, not ${url}`);
  if (!Array.isArray(n.references)) throw fail(`${where}.references that is not a list`);
  const deriver = n.deriver === null ? undefined : n.deriver;
  if (deriver !== undefined && (typeof deriver !== "string" || !deriver.endsWith(".drv"))) {
    throw fail(`${where}.deriver ${JSON.stringify(deriver).slice(0, 120)}`);
  }
  const ca = n.ca === null ? undefined : n.ca;
  if (ca !== undefined && (typeof ca !== "string" || ca.length > 300)) {
    throw fail(`${where}.ca that is not a content address`);
  }
  return {
    storePath: path,
    url,
    compression,
    fileHash,
    fileSize: size(n.fileSize, `${where}.fileSize`, fail),
    narHash: hash(n.narHash, `${where}.narHash`, fail),
    narSize: size(n.narSize, `${where}.narSize`, fail),
    references: n.references.map((r, i) => storePath(r, `${where}.references[${i}]`, fail)),
    deriver:
      deriver === undefined
        ? undefined
        : parseStorePath(storePath(`/nix/store/${deriver}`, `${where}.deriver`, fail)).baseName,
    sigs: [],
    ca,
  };
}

function record(value: unknown, where: string, fail: Fail): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw fail(`${where} that is not an object`);
  }
  return value as Record<string, unknown>;
}

function exactKeys(
  value: Record<string, unknown>,
  keys: readonly string[],
  where: string,
  fail: Fail,
  optional: readonly string[] = [],
): void {
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw fail(`${where} with an unknown key ${JSON.stringify(key)}`);
  }
  for (const key of keys) {
    if (!(key in value) && !optional.includes(key)) throw fail(`${where} without ${key}`);
  }
}

function storePath(value: unknown, where: string, fail: Fail): StorePath {
  if (typeof value !== "string") throw fail(`${where} that is not a store path`);
  try {
    return parseStorePath(value, where).path;
  } catch {
    throw fail(`${where} ${JSON.stringify(value.slice(0, 120))}, not a store path`);
  }
}

function hash(value: unknown, where: string, fail: Fail): Sha256 {
  if (typeof value !== "string" || !value.startsWith("sha256:")) {
    throw fail(`${where} that is not a sha256 hash`);
  }
  try {
    return Sha256.parse(value);
  } catch {
    throw fail(`${where} ${JSON.stringify(value.slice(0, 80))}, not a sha256 hash`);
  }
}

function size(value: unknown, where: string, fail: Fail): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw fail(`${where} that is not a size`);
  }
  return value;
}
