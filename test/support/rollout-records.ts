// The rollout records a lab's deploys left in its cache directory (status/rollouts/), read
// back as files, newest first (their keys sort so).
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface RolloutFile {
  readonly id: string;
  readonly state: string;
  readonly undoes?: string;
  readonly waves: readonly { readonly hosts: readonly Record<string, unknown>[] }[];
  readonly skipped?: readonly Record<string, unknown>[];
  readonly [k: string]: unknown;
}

/** `cacheUrl`: a `file://` store URL (a query, if any, is ignored). */
export async function rolloutFiles(cacheUrl: string): Promise<RolloutFile[]> {
  const dir = join(fileURLToPath(cacheUrl.replace(/\?.*$/, "")), "status", "rollouts");
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((f) => f.endsWith(".json"))
    .sort();
  return await Promise.all(
    names.map(async (f) => JSON.parse(await readFile(join(dir, f), "utf8")) as RolloutFile),
  );
}
