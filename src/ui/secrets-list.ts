// `nixship secrets list` as a table: one row per secret, then what needs doing.

import type { SecretRow } from "../secrets/secret-ops.js";
import { secretsCommand } from "../secrets/secrets-command.js";
import { formatTable } from "./plan-format.js";

const ACTION: Record<SecretRow["state"], string | undefined> = {
  ok: undefined,
  stale: "rekey",
  unchecked: "rekey",
  // Another secret's value: restored from version control, or set anew.
  "of-another": "set",
  missing: "set",
  damaged: "set",
};

/** `fleetArg`: the fleet as --fleet named it, for the commands it prints. */
export function formatSecretsList(rows: readonly SecretRow[], fleetArg?: string): string {
  if (rows.length === 0) return "the fleet has no secrets\n";
  const table: string[][] = [["secret", "hosts", "path", "owner", "mode", "recipients"]];
  for (const r of rows) {
    const note =
      r.hostsWithoutKey.length > 0 ? `; no host key: ${r.hostsWithoutKey.join(", ")}` : "";
    table.push([
      r.name,
      r.hosts.join(",") || "-",
      r.path,
      `${r.owner}:${r.group}`,
      r.mode,
      `${r.state}${note}`,
    ]);
  }
  const todo = rows.flatMap((r) => {
    const action = ACTION[r.state];
    return action === undefined ? [] : [secretsCommand(`${action} ${r.name}`, fleetArg)];
  });
  const lines = formatTable(table);
  if (todo.length > 0) lines.push("", "to do:", ...todo.map((t) => `  ${t}`));
  return `${lines.join("\n")}\n`;
}
