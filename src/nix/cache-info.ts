// `nix-cache-info`, the file a Nix client reads first to learn the cache's store directory.
import { InputError } from "../errors.js";
import { STORE_DIR } from "./store-path.js";

export interface CacheInfo {
  readonly storeDir: string;
  readonly wantMassQuery: boolean;
  readonly priority: number;
}

export const DEFAULT_CACHE_INFO: CacheInfo = {
  storeDir: STORE_DIR,
  wantMassQuery: true,
  priority: 40,
};

export function formatCacheInfo(info: CacheInfo = DEFAULT_CACHE_INFO): string {
  return `StoreDir: ${info.storeDir}\nWantMassQuery: ${info.wantMassQuery ? 1 : 0}\nPriority: ${info.priority}\n`;
}

export function parseCacheInfo(text: string, where = "nix-cache-info"): CacheInfo {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0)
      throw new InputError("bad-cache-info", `${where}: expected 'Key: value', got '${line}'`);
    fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const storeDir = fields.get("StoreDir");
  if (!storeDir) throw new InputError("bad-cache-info", `${where}: missing StoreDir`);
  const priority = Number(fields.get("Priority") ?? "50");
  return {
    storeDir,
    wantMassQuery: fields.get("WantMassQuery") === "1",
    priority: Number.isFinite(priority) ? priority : 50,
  };
}
