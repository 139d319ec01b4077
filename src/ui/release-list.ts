// `nixship release list`'s table: one line per release (a missing file too), the channel's
// marked '*'.
import type { ReleaseEntry } from "../release/release-store.js";
import { formatTable } from "./plan-format.js";

export function formatReleaseList(entries: readonly ReleaseEntry[]): string {
  const rows = [
    ["", "SEQ", "CREATED", "KIND", "HOSTS", "DIGEST"],
    ...entries.map((e) => [
      e.current ? "*" : "",
      String(e.seq),
      ...(e.status === "ok"
        ? [e.created, e.kind, String(e.hosts), e.digest]
        : e.status === "malformed"
          ? ["-", "malformed", "-", e.digest]
          : ["-", "missing", "-", "-"]),
    ]),
  ];
  return formatTable(rows)
    .map((line) => `${line}\n`)
    .join("");
}
