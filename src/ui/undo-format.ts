// The plan of a rollback of a rollout, for a person: which hosts go back and to what, which stay
// where they are and why, which are refused.
import { storeName } from "../nix/store-path.js";
import type { UndoRead } from "../views/rollout-undo.js";

export function formatUndoPlan(read: UndoRead): string {
  const { record, steps } = read;
  const lines = [
    `Rolling back rollout ${record.id} (${record.action}, ${record.mode}, started ${record.startedAt}${record.by ? ` by ${record.by}` : ""}, ${record.state}):`,
  ];
  for (const s of steps) {
    switch (s.kind) {
      case "back":
        lines.push(`  ${s.host}: back from ${storeName(s.from)} to ${storeName(s.to)}`);
        break;
      case "stays":
        lines.push(
          `  ${s.host}: stays${s.runs === null ? "" : ` on ${storeName(s.runs)}`}: ${s.why}`,
        );
        break;
      case "refused":
        lines.push(`  ${s.host}: REFUSED: ${s.why}`);
        break;
    }
  }
  for (const host of read.gone) {
    lines.push(
      read.goneChanged.includes(host)
        ? `  ${host}: NOT UNDONE: not in the fleet file (removed, or renamed), so left as rollout ${read.record.id} left it; add it back to the fleet file to roll it back`
        : `  ${host}: not in the fleet file: left alone (rollout ${read.record.id} did not change it)`,
    );
  }
  const back = steps.filter((s) => s.kind === "back").length;
  lines.push(
    back === 0
      ? "Nothing to roll back."
      : `${back} host(s) go back; the rollback runs as a deploy of those systems (plan below).`,
  );
  return `${lines.join("\n")}\n`;
}
