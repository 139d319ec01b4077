// Synthetic cache objects written straight into an ObjectStore: valid, signed narinfos and
// their NARs (one small file each, stored uncompressed), with the references the caller
// names. For the collector's tests and bench:gc, where thousands of paths are needed and
// no Nix has to read them.
import { narInfoKey, narKey } from "../src/cache/layout.js";
import { Sha256 } from "../src/nix/hash.js";
import type { SecretKey } from "../src/nix/keys.js";
import { buildNar, narNode } from "../src/nix/nar-write.js";
import { formatNarInfo, type NarInfo, signNarInfo } from "../src/nix/narinfo.js";
import { makeStorePath, type StorePath } from "../src/nix/store-path.js";
import type { ObjectStore } from "../src/store/object-store.js";

export interface SyntheticPath {
  readonly path: StorePath;
  readonly narinfoKey: string;
  readonly narKey: string;
  readonly references: readonly StorePath[];
}

/** A store path for `name`, unique by `seed`. */
export function syntheticPath(seed: string, name: string): StorePath {
  return makeStorePath("output:out", Sha256.of(seed), name);
}

/** One path's NAR (a file holding `contents`) and its narinfo, unsigned, stored uncompressed. */
export function syntheticNar(
  path: StorePath,
  references: readonly StorePath[],
  contents: string,
): { readonly info: NarInfo; readonly nar: Buffer } {
  const nar = buildNar(narNode.regular(contents));
  const hash = Sha256.of(nar);
  return {
    nar,
    info: {
      storePath: path,
      url: narKey(hash, "none"),
      compression: "none",
      fileHash: hash,
      fileSize: nar.length,
      narHash: hash,
      narSize: nar.length,
      references: [...references].sort(),
      deriver: undefined,
      sigs: [],
      ca: undefined,
    },
  };
}

/**
 * Puts one path (its NAR, then its narinfo, as a push orders them) and returns its keys.
 * `contents` makes the NAR distinct (default: the path itself).
 */
export async function putSyntheticPath(
  store: ObjectStore,
  key: SecretKey,
  path: StorePath,
  references: readonly StorePath[],
  contents: string = path,
): Promise<SyntheticPath> {
  const { info, nar } = syntheticNar(path, references, contents);
  const signed = signNarInfo(info, key);
  await store.put(info.url, nar);
  await store.put(narInfoKey(path), Buffer.from(formatNarInfo(signed)));
  return { path, narinfoKey: narInfoKey(path), narKey: info.url, references: info.references };
}

/** Every key in the store, sorted (the whole listing). */
export async function allKeys(store: ObjectStore, prefix = ""): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await store.list(prefix, token === undefined ? {} : { token });
    keys.push(...page.objects.map((o) => o.key));
    token = page.nextToken;
  } while (token !== undefined);
  return keys.sort();
}
