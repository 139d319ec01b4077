// Store URLs (`file:///dir`, `/dir`, `s3://bucket/prefix?region=&endpoint=&profile=&upload-concurrency=`):
// parsing, the canonical form, and `openStore`, the one factory that turns a URL into an ObjectStore.
import { stat } from "node:fs/promises";
import { isAbsolute, normalize } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { InputError } from "../errors.js";
import { shownUrl } from "../util/url-credentials.js";
import { FsStore } from "./fs-store.js";
import { keyProblem } from "./keys.js";
import type { ObjectStore } from "./object-store.js";

export type StoreUrl =
  | {
      readonly kind: "file";
      readonly root: string;
      /** fsync each object before reporting it written (default); `?fsync=false` skips it. */
      readonly fsync: boolean;
    }
  | {
      readonly kind: "s3";
      readonly bucket: string;
      /** Without leading or trailing "/"; "" for the whole bucket. */
      readonly prefix: string;
      readonly region: string;
      readonly endpoint?: string;
      readonly profile?: string;
      /** Multipart parts in flight at once (1-16, default 4; each holds 8 MiB). */
      readonly uploadConcurrency?: number;
    };

const FORMS =
  "accepted forms: file:///abs/dir[?fsync=false], /abs/dir, s3://bucket[/prefix][?region=R&endpoint=URL&profile=P&upload-concurrency=N]";
const S3_PARAMS = new Set(["region", "endpoint", "profile", "upload-concurrency"]);
/**
 * upload-concurrency's range: each part in flight holds 8 MiB (s3-store.ts), so 16 hold 128 MiB,
 * and more than 16 at once gain nothing against one S3 prefix.
 */
const UPLOAD_CONCURRENCY = { min: 1, max: 16 } as const;
// S3's bucket naming rules: 3-63 of [a-z0-9.-], starting and ending with a letter or digit.
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION = /^[a-z0-9-]+$/;
const PROFILE = /^[A-Za-z0-9_.+@-]+$/;

export function parseStoreUrl(text: string, env: NodeJS.ProcessEnv = process.env): StoreUrl {
  const bad = (what: string) =>
    new InputError("bad-store-url", `bad store URL "${shownUrl(text)}": ${what}`, { hint: FORMS });
  if (text.startsWith("/")) {
    if (text.includes("\0")) throw bad("the path contains a NUL byte");
    return { kind: "file", root: notTheRoot(trimSlash(normalize(text)), bad), fsync: true };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(text)?.[1]?.toLowerCase();
  if (scheme === undefined) throw bad("it is neither an absolute path nor a URL");
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad("it is not a valid URL");
  }
  if (scheme === "file") return parseFileUrl(url, text, bad);
  if (scheme === "s3") return parseS3Url(url, text, env, bad);
  throw bad(`unknown scheme "${scheme}:"`);
}

function parseFileUrl(url: URL, text: string, bad: (what: string) => InputError): StoreUrl {
  // WHATWG parsing reads `file:dir` and `file:/dir` as `file:///dir`; insist on the written form.
  if (!/^file:\/\//i.test(text)) throw bad('a file URL starts with "file:///"');
  if (url.host !== "") throw bad(`file URLs name no host (got "${url.host}"); use file:///abs/dir`);
  if (url.hash !== "") throw bad("file URLs take no fragment");
  let fsync = true;
  for (const [name, value] of url.searchParams) {
    if (name !== "fsync") throw bad(`unknown parameter "${name}" (file URLs take only fsync)`);
    if (value !== "true" && value !== "false")
      throw bad(`fsync must be true or false, not "${value}"`);
    fsync = value === "true";
  }
  let root: string;
  try {
    root = fileURLToPath(url);
  } catch (err) {
    throw bad(
      err instanceof URIError
        ? "the path is not valid percent-encoding (a '%' is followed by two hex digits; '%25' is '%')"
        : (err as Error).message,
    );
  }
  if (root.includes("\0")) throw bad("the path holds a NUL byte (%00)");
  if (!isAbsolute(root)) throw bad("the path must be absolute");
  return { kind: "file", root: notTheRoot(trimSlash(normalize(root)), bad), fsync };
}

/**
 * A store's directory is never the filesystem's root: `file://` or `/` is what a variable that
 * expanded to nothing leaves (`file://$CACHE_DIR`), and a cache written there lands in `/`.
 */
function notTheRoot(root: string, bad: (what: string) => InputError): string {
  if (root === "/") {
    throw bad(
      "it names the root directory /, which is never a store (did a variable in it expand to nothing?)",
    );
  }
  return root;
}

function parseS3Url(
  url: URL,
  text: string,
  env: NodeJS.ProcessEnv,
  bad: (what: string) => InputError,
): StoreUrl {
  if (url.username !== "" || url.password !== "") {
    throw bad("credentials do not belong in the URL; they come from the AWS SDK's default chain");
  }
  if (url.port !== "") throw bad("an s3 URL names a bucket, not a host:port; use ?endpoint=");
  const bucket = url.hostname;
  if (!BUCKET.test(bucket) || bucket.includes("..") || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    throw bad(`"${bucket}" is not a valid bucket name (3-63 of a-z, 0-9, "." and "-")`);
  }
  if (url.hash !== "") throw bad("s3 URLs take no fragment");
  // Read the prefix from the text as written: URL parsing would silently resolve "a/../b".
  const rawPath = text.replace(/^s3:\/\/[^/?#]*/i, "").replace(/[?#].*$/, "");
  let prefix: string;
  try {
    prefix = decodeURIComponent(rawPath).replace(/^\//, "").replace(/\/$/, "");
  } catch {
    throw bad("the prefix is not valid percent-encoding");
  }
  const problem = prefix === "" ? undefined : keyProblem(prefix);
  if (problem !== undefined) throw bad(`the prefix "${prefix}" is not a valid key: ${problem}`);

  const params = new Map<string, string>();
  for (const [name, value] of url.searchParams) {
    if (!S3_PARAMS.has(name))
      throw bad(`unknown parameter "${name}" (known: ${[...S3_PARAMS].join(", ")})`);
    if (params.has(name)) throw bad(`parameter "${name}" is given twice`);
    params.set(name, value);
  }
  const region = params.get("region") ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? "us-east-1";
  if (!REGION.test(region)) throw bad(`"${region}" is not a valid region`);
  const profile = params.get("profile");
  if (profile !== undefined && !PROFILE.test(profile))
    throw bad(`"${profile}" is not a valid profile name`);
  const endpointText = params.get("endpoint");
  let endpoint: string | undefined;
  if (endpointText !== undefined) {
    const parsed = URL.canParse(endpointText) ? new URL(endpointText) : undefined;
    if (parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
      throw bad(`endpoint "${shownUrl(endpointText)}" is not an http(s) URL`);
    }
    if (
      parsed.username !== "" ||
      parsed.password !== "" ||
      parsed.pathname !== "/" ||
      parsed.search !== ""
    ) {
      throw bad(
        `endpoint "${shownUrl(endpointText)}" must be just scheme://host[:port], with no credentials or path`,
      );
    }
    endpoint = parsed.origin;
  }
  const concurrencyText = params.get("upload-concurrency");
  let uploadConcurrency: number | undefined;
  if (concurrencyText !== undefined) {
    const { min, max } = UPLOAD_CONCURRENCY;
    uploadConcurrency = /^[0-9]{1,3}$/.test(concurrencyText) ? Number(concurrencyText) : Number.NaN;
    if (!(uploadConcurrency >= min && uploadConcurrency <= max)) {
      throw bad(
        `upload-concurrency must be a whole number from ${min} to ${max} (multipart parts in flight, 8 MiB each), not "${concurrencyText}"`,
      );
    }
  }
  return {
    kind: "s3",
    bucket,
    prefix,
    region,
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(profile !== undefined ? { profile } : {}),
    ...(uploadConcurrency !== undefined ? { uploadConcurrency } : {}),
  };
}

/** The canonical text of a parsed URL: `file:///dir` or `s3://bucket/prefix?region=…`. */
export function formatStoreUrl(url: StoreUrl): string {
  if (url.kind === "file") return pathToFileURL(url.root).href + (url.fsync ? "" : "?fsync=false");
  const query = new URLSearchParams({ region: url.region });
  if (url.endpoint !== undefined) query.set("endpoint", url.endpoint);
  if (url.profile !== undefined) query.set("profile", url.profile);
  if (url.uploadConcurrency !== undefined) {
    query.set("upload-concurrency", String(url.uploadConcurrency));
  }
  const path =
    url.prefix === "" ? "" : `/${url.prefix.split("/").map(encodeURIComponent).join("/")}`;
  return `s3://${url.bucket}${path}?${query}`;
}

/**
 * Opens the store a URL names. Nothing is contacted until the first operation. The S3
 * adapter (and the AWS SDK, ~120 ms to load) is imported only when an s3:// URL is opened.
 */
export async function openStore(text: string): Promise<ObjectStore> {
  const url = parseStoreUrl(text);
  if (url.kind === "file") {
    await refuseFileRoot(url.root);
    return new FsStore(url.root, { fsync: url.fsync });
  }
  const { S3Store } = await import("./s3-store.js");
  return new S3Store({
    bucket: url.bucket,
    prefix: url.prefix,
    region: url.region,
    ...(url.endpoint !== undefined ? { endpoint: url.endpoint } : {}),
    ...(url.profile !== undefined ? { profile: url.profile } : {}),
    ...(url.uploadConcurrency !== undefined ? { uploadConcurrency: url.uploadConcurrency } : {}),
    url: formatStoreUrl(url),
  });
}

/**
 * A directory store's root that is there and is not a directory (or lies under a file): its
 * every read would say "no binary cache" and its every write fail with ENOTDIR on a temporary
 * file's name. Said once, as what it is. A root not there yet is made by the first write.
 */
async function refuseFileRoot(root: string): Promise<void> {
  const problem = await stat(root).then(
    (info) => (info.isDirectory() ? undefined : "is a file, not a directory"),
    (err: NodeJS.ErrnoException) =>
      err.code === "ENOTDIR" ? "is under a file, not a directory" : undefined,
  );
  if (problem !== undefined) {
    throw new InputError("store-not-directory", `${pathToFileURL(root).href}: ${root} ${problem}`, {
      hint: "a file:// store URL names a directory (made by the first write if it is not there): give another path",
    });
  }
}

function trimSlash(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, "") : path;
}
