// What a binary cache holds, from LIST calls alone: its narinfos (and the `.ls` listings Nix
// may write beside them) at the root, its NARs under `nar/`, and under `delta/` the NARs of
// delta paths and the deltas' skip notes (docs/deltas.md). Other folders (releases,
// release-shards, channels, status, secrets, gc, a stock Nix cache's log/ or realisations/) are stepped over
// with one jump each, so the listing costs the cache's own objects / 1,000 pages plus one page
// per folder, however many status markers the fleet keeps.
import type { ObjectInfo, ObjectStore } from "../store/object-store.js";

/** One listed object: its key, size and age, kept small (a cache may list millions). */
export interface CacheObject {
  readonly key: string;
  readonly size: number;
  /** Milliseconds since the epoch. */
  readonly modified: number;
}

export interface CacheInventory {
  /** By hash part: the narinfo objects (`<hash>.narinfo`). */
  readonly narinfos: Map<string, CacheObject>;
  /** By hash part: Nix's NAR listings (`<hash>.ls`), which belong to the narinfo of that hash. */
  readonly listings: Map<string, CacheObject>;
  /**
   * By key: the NAR files (`nar/<filehash>.nar[.zst|.xz|.bz2]`), and the NARs of delta paths
   * (`delta/<narhash>.nar`), which their narinfos name in the same way.
   */
  readonly nars: Map<string, CacheObject>;
  /** By key: the deltas' skip notes (`delta/skip/<target hash>-<base hash>.json`). */
  readonly deltaSkips: Map<string, CacheObject>;
  /** LIST calls the inventory took. */
  readonly listCalls: number;
}

const NIX32 = "[0-9a-df-np-sv-z]";
const NARINFO_KEY = new RegExp(`^(${NIX32}{32})\\.narinfo$`);
const LISTING_KEY = new RegExp(`^(${NIX32}{32})\\.ls$`);
const NAR_KEY = new RegExp(`^nar/${NIX32}{52}\\.nar(?:\\.zst|\\.xz|\\.bz2)?$`);
const DELTA_NAR_KEY = new RegExp(`^delta/${NIX32}{52}\\.nar$`);
const DELTA_SKIP_KEY = new RegExp(`^delta/skip/(${NIX32}{32})-${NIX32}{32}\\.json$`);

/** The hash part a narinfo key names, or undefined when the key is no narinfo's. */
export function narInfoHashOf(key: string): string | undefined {
  return NARINFO_KEY.exec(key)?.[1];
}

/** The target's hash part a delta's skip note is named by, or undefined for any other key. */
export function skipNoteTargetOf(key: string): string | undefined {
  return DELTA_SKIP_KEY.exec(key)?.[1];
}

export interface InventoryProgress {
  readonly narinfos: number;
  readonly nars: number;
}

/** Lists the cache's narinfos, listings and NARs; `onProgress` after every page. */
export async function readInventory(
  store: ObjectStore,
  onProgress?: (progress: InventoryProgress) => void,
): Promise<CacheInventory> {
  const nars = new Map<string, CacheObject>();
  const root = await listRoot(store, (narinfos) => onProgress?.({ narinfos, nars: 0 }));
  const deltaSkips = new Map<string, CacheObject>();
  let listCalls = root.listCalls;
  for (const prefix of ["nar/", "delta/"]) {
    let token: string | undefined;
    do {
      const page = await store.list(prefix, token === undefined ? {} : { token });
      listCalls++;
      for (const o of page.objects) {
        if (NAR_KEY.test(o.key) || DELTA_NAR_KEY.test(o.key)) nars.set(o.key, compact(o));
        else if (DELTA_SKIP_KEY.test(o.key)) deltaSkips.set(o.key, compact(o));
      }
      token = page.nextToken;
      onProgress?.({ narinfos: root.narinfos.size, nars: nars.size });
    } while (token !== undefined);
  }
  return { ...root, nars, deltaSkips, listCalls };
}

/** The narinfos and listings at the root now (folders stepped over): also the second look. */
export async function listRoot(
  store: ObjectStore,
  onPage?: (narinfos: number) => void,
): Promise<Pick<CacheInventory, "narinfos" | "listings" | "listCalls">> {
  const narinfos = new Map<string, CacheObject>();
  const listings = new Map<string, CacheObject>();
  let listCalls = 0;
  for await (const page of rootPages(store)) {
    listCalls++;
    for (const o of page) {
      const narinfo = NARINFO_KEY.exec(o.key)?.[1];
      if (narinfo !== undefined) narinfos.set(narinfo, compact(o));
      const listing = LISTING_KEY.exec(o.key)?.[1];
      if (listing !== undefined) listings.set(listing, compact(o));
    }
    onPage?.(narinfos.size);
  }
  return { narinfos, listings, listCalls };
}

/**
 * The objects at the root of the store (no "/" in their keys), a page at a time. At the first
 * key inside a folder, the listing starts again after every key of that folder: a folder
 * `F/` holds exactly the keys between `F/` and `F0` ("/" sorts just before "0"), so starting
 * after `F0` steps over all of it. Every page starts after a key the previous one returned,
 * so the listing always moves forward.
 */
async function* rootPages(store: ObjectStore): AsyncGenerator<ObjectInfo[]> {
  let options: { token?: string; startAfter?: string } = {};
  for (;;) {
    const page = await store.list("", options);
    const atRoot: ObjectInfo[] = [];
    let folder: string | undefined;
    for (const o of page.objects) {
      const slash = o.key.indexOf("/");
      if (slash >= 0) {
        folder = o.key.slice(0, slash);
        break;
      }
      atRoot.push(o);
    }
    yield atRoot;
    if (folder !== undefined) options = { startAfter: `${folder}0` };
    else if (page.nextToken !== undefined) options = { token: page.nextToken };
    else return;
  }
}

function compact(o: ObjectInfo): CacheObject {
  return { key: o.key, size: o.size, modified: o.lastModified.getTime() };
}
