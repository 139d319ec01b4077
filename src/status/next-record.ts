// A host's record is a fold of what happened to it: every writer (a deploy's result, a skip, a
// failure, a rollback, an agent's report or refusal, a drift or a reboot it noticed) hands the
// record it read and what it knows now, and gets the next record. What the host runs, its
// generation, the system it ran before, what it last said of its secrets and its next boot, and
// what it fetched by delta to get the system it runs are carried forward unless the writer knows better: a field a write drops is a system the
// collection may delete, and a view that shows "unknown" for a host that runs something.
import { type RecordParts, type StatusRecord, statusRecord } from "./status.js";

/**
 * The record after `event`, from `before` (the host's record as read; undefined when it has
 * none, or it could not be read). `event.system` undefined: the writer does not know what the
 * host runs, and the record keeps what it said. `event.previous` undefined: the system it ran
 * before is the one `before` named as running, when the host runs another now; else the one
 * `before` named as previous. `event.origin` undefined: what put the host's system there is
 * `before`'s word while the host still runs what `before` said, else unknown.
 */
export function nextRecord(before: StatusRecord | undefined, event: RecordParts): StatusRecord {
  if (before === undefined) return statusRecord(event);
  const system = event.system ?? {
    current: before.current,
    generation: before.generation,
  };
  const moved = system.current !== before.current && before.current !== null;
  const previous =
    event.previous !== undefined ? event.previous : moved ? before.current : before.previous;
  const secrets = system.secrets !== undefined ? system.secrets : before.secrets;
  const reboot = system.reboot !== undefined ? system.reboot : before.reboot;
  const origin =
    event.origin !== undefined
      ? event.origin
      : system.current === before.current
        ? before.origin
        : undefined;
  // How the host got the system it runs, while it runs it.
  const delta = event.what.delta ?? (system.current === before.current ? before.delta : undefined);
  return statusRecord({
    ...event,
    what: { ...event.what, ...(delta === undefined ? {} : { delta }) },
    system: {
      current: system.current,
      // A host that still runs what its record said keeps that generation when this writer
      // does not know it.
      generation:
        system.generation ?? (system.current === before.current ? before.generation : null),
      ...(secrets === undefined ? {} : { secrets }),
      ...(reboot === undefined ? {} : { reboot }),
    },
    ...(previous === undefined ? {} : { previous }),
    origin,
    ...(event.agent === undefined && typeof before.agent === "string"
      ? { agent: before.agent }
      : {}),
  });
}
