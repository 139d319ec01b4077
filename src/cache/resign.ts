// `push --resign`: add a key's signature to narinfos already in the cache. Only a narinfo that
// describes exactly what the local store holds (path, NarHash, NarSize, references) is signed,
// so a narinfo someone else planted is never blessed with a trusted key; its other signatures
// are kept.
import { InputError } from "../errors.js";
import type { PathInfo } from "../nix/closure.js";
import {
  formatPublicKey,
  type PublicKey,
  publicKeyOf,
  type SecretKey,
  verifyDetached,
} from "../nix/keys.js";
import { fingerprint, formatNarInfo, type NarInfo, signNarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { mapLimit } from "../util/pool.js";
import { narInfoKey } from "./layout.js";
import { readNarInfo } from "./read.js";

/** Narinfos read and written at once. */
const RESIGN_JOBS = 16;

export interface ResignResult {
  /** Paths whose narinfo now carries the key's signature, which it did not before. */
  readonly resigned: readonly StorePath[];
  /** Paths whose narinfo already carried a valid signature by the key. */
  readonly alreadySigned: number;
}

/**
 * Signs the narinfos of `present` (paths the cache has) with `key` where they lack its valid
 * signature. Refuses, naming each path, narinfos that do not match the local store: those are
 * pushed afresh by removing them, never signed as they are.
 */
export async function resignPresent(
  store: ObjectStore,
  present: readonly PathInfo[],
  key: SecretKey,
): Promise<ResignResult> {
  const publicKey = publicKeyOf(key);
  const checked = await mapLimit(present, RESIGN_JOBS, async (local) => {
    const info = await readNarInfo(store, local.path);
    if (info === undefined) return { local, status: "gone" as const };
    const differs = difference(info, local);
    if (differs !== undefined) return { local, status: "differs" as const, differs };
    const signed = info.sigs.some((sig) => verifyDetached(sig, fingerprint(info), [publicKey]).ok);
    return signed ? { local, status: "signed" as const } : { local, status: "sign" as const, info };
  });
  const bad = checked.flatMap((c) =>
    c.status === "differs"
      ? [`${c.local.path}: ${c.differs}`]
      : c.status === "gone"
        ? [`${c.local.path}: its narinfo went away during the push`]
        : [],
  );
  if (bad.length > 0) {
    throw new InputError(
      "narinfo-differs",
      `not re-signed with '${key.name}' (${formatPublicKey(publicKey)}), since the cache's narinfo does not describe what the local store holds:\n  ${bad.slice(0, 20).join("\n  ")}${bad.length > 20 ? `\n  … and ${bad.length - 20} more` : ""}`,
      {
        hint: "remove those narinfos from the cache and push again: the paths are then uploaded afresh",
      },
    );
  }
  const toSign = checked.flatMap((c) => (c.status === "sign" ? [c.info] : []));
  await mapLimit(toSign, RESIGN_JOBS, async (info) => {
    await store.put(
      narInfoKey(info.storePath),
      Buffer.from(formatNarInfo(signNarInfo(info, key))),
      {
        contentType: "text/x-nix-narinfo",
      },
    );
  });
  return {
    resigned: toSign.map((i) => i.storePath),
    alreadySigned: checked.filter((c) => c.status === "signed").length,
  };
}

/** How the narinfo differs from the local path's info, or undefined when it matches. */
function difference(info: NarInfo, local: PathInfo): string | undefined {
  if (!info.narHash.equals(local.narHash)) {
    return `NarHash ${info.narHash.format("nix32")} there, ${local.narHash.format("nix32")} here`;
  }
  if (info.narSize !== local.narSize) return `NarSize ${info.narSize} there, ${local.narSize} here`;
  const there = [...info.references].sort().join(" ");
  const here = [...local.references].sort().join(" ");
  if (there !== here) return "its references differ from the local store's";
  return undefined;
}

/**
 * Whether the cache holds one of `roots` signed by none of `keys`: pushed before the fleet's
 * keys were rotated, say, which hosts that trust only `keys` refuse. One GET a root present.
 */
export async function heldUntrusted(
  store: ObjectStore,
  roots: readonly StorePath[],
  keys: readonly PublicKey[],
): Promise<boolean> {
  const found = await mapLimit(roots, RESIGN_JOBS, async (root) => {
    const info = await readNarInfo(store, root);
    return (
      info !== undefined &&
      !info.sigs.some((sig) => verifyDetached(sig, fingerprint(info), keys).ok)
    );
  });
  return found.some(Boolean);
}
