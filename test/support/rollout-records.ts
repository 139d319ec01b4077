// The rollout records a lab's deploys left in its cache directory (status/rollouts/), read
// back as files, newest first (their keys sort so); and records for unit tests.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RolloutHost, RolloutRecord } from "../../src/status/rollout.js";

/** A record of a rollout of one main wave of `hosts` over ssh, `over` laid on top. */
export function rolloutRecord(
  hosts: readonly RolloutHost[],
  over: Partial<RolloutRecord> = {},
): RolloutRecord {
  return {
    version: 1,
    id: "0123456789ab",
    mode: "ssh",
    action: "switch",
    state: "running",
    stopped: null,
    waves: [{ index: 1, kind: "main", hosts }],
    skipped: [],
    startedAt: "2026-11-26T07:00:00.000Z",
    updatedAt: "2026-11-26T07:00:01.000Z",
    ...over,
  };
}

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

/** A row of `nixship status --json`, as the rollout tests read it. */
export interface StatusRow {
  readonly host: string;
  readonly inStep: boolean;
  readonly liveness?: string;
  readonly behindRollout?: { readonly rollout: string; readonly why: string };
  readonly origin?: { readonly ref: string | null };
  readonly hostState?: string;
  readonly failureUndone?: string;
}

/** `nixship status --fleet F --json EXTRA…` through `run`: its exit code and rows by host. */
export async function statusRows(
  run: (args: readonly string[]) => Promise<{ code: number; stdout: string }>,
  fleetFile: string,
  ...extra: string[]
): Promise<{ code: number; rows: Map<string, StatusRow> }> {
  const r = await run(["status", "--fleet", fleetFile, "--json", ...extra]);
  const rows = (JSON.parse(r.stdout) as { hosts: StatusRow[] }).hosts;
  return { code: r.code, rows: new Map(rows.map((row) => [row.host, row])) };
}

/** The `undo-plan` line of a `rollback --json` run: the rollout undone, and each host's step. */
export function undoPlanOf(stdout: string): {
  readonly rollout: string;
  readonly steps: readonly { readonly host: string; readonly kind: string }[];
} {
  const line = stdout
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l.startsWith('{"type":"undo-plan"'));
  if (line === undefined) throw new Error(`no undo-plan line in: ${stdout.slice(0, 2000)}`);
  return JSON.parse(line);
}
