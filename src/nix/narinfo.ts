// .narinfo files: strict parsing, canonical serialisation, and the signed fingerprint.
import { InputError } from "../errors.js";
import { detached } from "../util/detached.js";
import { clipped, signatureKeyName } from "../util/text.js";
import { Sha256 } from "./hash.js";
import type { PublicKey, SecretKey, SignatureCheck } from "./keys.js";
import { signDetached, verifyDetached } from "./keys.js";
import type { StorePath } from "./store-path.js";
import { parseBaseName, parseStorePath, STORE_DIR } from "./store-path.js";

export type Compression = "zstd" | "xz" | "bzip2" | "none";

export interface NarInfo {
  readonly storePath: StorePath;
  readonly url: string;
  readonly compression: Compression;
  readonly fileHash: Sha256 | undefined;
  readonly fileSize: number | undefined;
  readonly narHash: Sha256;
  readonly narSize: number;
  /** Full store paths, in the order the file lists them. */
  readonly references: readonly StorePath[];
  readonly deriver: string | undefined;
  readonly sigs: readonly string[];
  readonly ca: string | undefined;
  /**
   * The lines of keys not modelled here (`System:`, which Hydra writes; another writer's own),
   * in file order: kept so that a narinfo written again (re-signed) loses none of them.
   */
  readonly extra?: readonly (readonly [key: string, value: string])[];
}

/** The keys parseNarInfo reads, in Nix's order; any other is kept as it is (NarInfo.extra). */
export const NARINFO_KEYS = [
  "StorePath",
  "URL",
  "Compression",
  "FileHash",
  "FileSize",
  "NarHash",
  "NarSize",
  "References",
  "Deriver",
  "Sig",
  "CA",
] as const;
const KNOWN_KEYS: ReadonlySet<string> = new Set(NARINFO_KEYS);

const COMPRESSIONS: readonly Compression[] = ["zstd", "xz", "bzip2", "none"];

export const NAR_EXTENSION: Record<Compression, string> = {
  zstd: ".nar.zst",
  xz: ".nar.xz",
  bzip2: ".nar.bz2",
  none: ".nar",
};

function parseSize(value: string, key: string, where: string): number {
  if (!/^[0-9]+$/.test(value))
    throw new InputError("bad-narinfo", `${where}: ${key} '${value}' is not a number`);
  const n = Number(value);
  if (!Number.isSafeInteger(n))
    throw new InputError("bad-narinfo", `${where}: ${key} ${value} is too large`);
  return n;
}

/** Parses narinfo text. `where` names the source (e.g. the object key) in errors. */
export function parseNarInfo(text: string, where = "narinfo"): NarInfo {
  if (text.length > 0 && !text.endsWith("\n")) {
    throw new InputError("bad-narinfo", `${where}: the last line does not end in a newline`);
  }
  const fields = new Map<string, string>();
  const sigs: string[] = [];
  const extra: (readonly [string, string])[] = [];
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((line, index) => {
    const colon = line.indexOf(": ");
    if (colon <= 0) {
      throw new InputError(
        "bad-narinfo",
        `${where}, line ${index + 1}: expected 'Key: value', got '${line.slice(0, 60)}'`,
      );
    }
    const key = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (key === "Sig") sigs.push(value);
    else if (!KNOWN_KEYS.has(key)) extra.push([detached(key), detached(value)]);
    else if (fields.has(key))
      throw new InputError("bad-narinfo", `${where}, line ${index + 1}: duplicate key ${key}`);
    else fields.set(key, value);
  });
  const need = (key: string): string => {
    const v = fields.get(key);
    if (v === undefined || v === "")
      throw new InputError("bad-narinfo", `${where}: missing required key ${key}`);
    return v;
  };
  const storePath = parseStorePath(need("StorePath"), `${where}: StorePath`).path;
  const url = need("URL");
  if (url.includes("..") || url.startsWith("/")) {
    throw new InputError(
      "bad-narinfo",
      `${where}: URL '${url}' must be a relative path inside the cache`,
    );
  }
  const compressionText = fields.get("Compression") ?? "bzip2";
  if (!COMPRESSIONS.includes(compressionText as Compression)) {
    throw new InputError("bad-narinfo", `${where}: unsupported Compression '${compressionText}'`);
  }
  const narSize = parseSize(need("NarSize"), "NarSize", where);
  if (narSize === 0)
    throw new InputError("bad-narinfo", `${where}: NarSize must be greater than 0`);
  const hashField = (key: string, required = false): Sha256 | undefined => {
    const v = required ? need(key) : fields.get(key);
    if (v === undefined) return undefined;
    try {
      return Sha256.parse(v);
    } catch (e) {
      throw new InputError("bad-narinfo", `${where}: ${key}: ${(e as Error).message}`);
    }
  };
  const refsText = fields.get("References") ?? "";
  const references =
    refsText === ""
      ? []
      : refsText.split(" ").map((r) => parseBaseName(r, `${where}: reference`).path);
  const fileSizeText = fields.get("FileSize");
  const deriver = fields.get("Deriver") || undefined;
  const ca = fields.get("CA") || undefined;
  // What a caller keeps of a narinfo (a cache's million paths and references, read to be
  // walked) holds its own characters, not the whole text it was cut from.
  return {
    storePath: detached(storePath) as StorePath,
    url: detached(url),
    compression: compressionText as Compression,
    fileHash: hashField("FileHash"),
    fileSize: fileSizeText === undefined ? undefined : parseSize(fileSizeText, "FileSize", where),
    narHash: hashField("NarHash", true) as Sha256,
    narSize,
    references: references.map((r) => detached(r) as StorePath),
    deriver: deriver === undefined ? undefined : detached(deriver),
    sigs: sigs.map(detached),
    ca: ca === undefined ? undefined : detached(ca),
    ...(extra.length === 0 ? {} : { extra }),
  };
}

function baseNameOf(path: string): string {
  return path.slice(STORE_DIR.length + 1);
}

/** Serialises in Nix's key order; every line, the last one too, ends in a newline. */
export function formatNarInfo(info: NarInfo): string {
  const lines = [
    `StorePath: ${info.storePath}`,
    `URL: ${info.url}`,
    `Compression: ${info.compression}`,
  ];
  if (info.fileHash) lines.push(`FileHash: ${info.fileHash.format("nix32")}`);
  if (info.fileSize !== undefined) lines.push(`FileSize: ${info.fileSize}`);
  lines.push(`NarHash: ${info.narHash.format("nix32")}`, `NarSize: ${info.narSize}`);
  lines.push(`References: ${info.references.map(baseNameOf).join(" ")}`);
  if (info.deriver) lines.push(`Deriver: ${info.deriver}`);
  // Where Nix writes the one it models of them (System), before the signatures.
  for (const [key, value] of info.extra ?? []) lines.push(`${key}: ${value}`);
  for (const sig of info.sigs) lines.push(`Sig: ${sig}`);
  if (info.ca) lines.push(`CA: ${info.ca}`);
  return `${lines.join("\n")}\n`;
}

/** `1;<path>;<narHash nix32>;<narSize>;<sorted full reference paths, comma-separated>` */
export function fingerprint(
  info: Pick<NarInfo, "storePath" | "narHash" | "narSize" | "references">,
): string {
  const refs = [...info.references].sort().join(",");
  return `1;${info.storePath};${info.narHash.format("nix32")};${info.narSize};${refs}`;
}

export function signNarInfo(info: NarInfo, key: SecretKey): NarInfo {
  const sig = signDetached(key, fingerprint(info));
  const others = info.sigs.filter((s) => !s.startsWith(`${key.name}:`));
  return { ...info, sigs: [...others, sig] };
}

export type NarInfoSignatureCheck =
  | { readonly ok: true; readonly keyName: string }
  | { readonly ok: false; readonly problems: readonly string[] };

/** The signatures of `info` that a key of `trusted` made and that match its contents. */
export function trustedSignatures(info: NarInfo, trusted: readonly PublicKey[]): string[] {
  const fp = fingerprint(info);
  return info.sigs.filter((sig) => verifyDetached(sig, fp, trusted).ok);
}

/** Accepts when at least one signature is valid and made by a trusted key (Nix's rule). */
export function checkNarInfoSignatures(
  info: NarInfo,
  trusted: readonly PublicKey[],
): NarInfoSignatureCheck {
  if (info.sigs.length === 0) return { ok: false, problems: ["it has no signatures"] };
  const fp = fingerprint(info);
  const problems: string[] = [];
  for (const sig of info.sigs) {
    const check: SignatureCheck = verifyDetached(sig, fp, trusted);
    if (check.ok) return check;
    const keyName = signatureKeyName(sig);
    problems.push(
      check.reason === "untrusted-key"
        ? `signature by '${keyName}' is from a key that is not trusted`
        : check.reason === "bad-signature"
          ? `signature by '${keyName}' does not match the narinfo's contents`
          : `signature '${clipped(sig, 30)}' is malformed`,
    );
  }
  return { ok: false, problems };
}
