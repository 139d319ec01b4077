// A host's record is a fold of what happened to it: every writer (a deploy's result, a skip, a
// failure, a rollback, an agent's report or refusal, a drift or a reboot it noticed) hands the
// record it read and what it knows now, and gets the next record. What the host runs, its
// generation, the system it ran before, what it last said of its secrets and its next boot, and
// what it fetched by delta to get the system it runs are carried forward unless the writer
// knows better: a field a write drops is a system the collection may delete, and a view that
// shows "unknown" for a host that runs something. What belongs to one system (its origin, its
// delta, its generation) never stays on a record whose system changed, and a record's times
// never go backwards.
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
  if (before === undefined) return statusRecord(inOrder(event, undefined));
  const system = event.system ?? {
    current: before.current,
    generation: before.generation,
  };
  const same = system.current === before.current;
  const moved = !same && before.current !== null;
  const previous =
    event.previous !== undefined ? event.previous : moved ? before.current : before.previous;
  const secrets = system.secrets !== undefined ? system.secrets : before.secrets;
  const reboot = system.reboot !== undefined ? system.reboot : before.reboot;
  const origin = event.origin !== undefined ? event.origin : same ? before.origin : undefined;
  // How the host got the system it runs, while it runs it.
  const delta = event.what.delta ?? (same ? before.delta : undefined);
  // A host that still runs what its record said keeps that generation when this writer does
  // not know it. A number the record gave another system is not named again: the host's Nix
  // made it anew (numbering one past the highest it has, after that one was removed), or the
  // host was installed afresh; either way "generation N" would name two systems.
  const told = system.generation ?? (same ? before.generation : null);
  const generation = !same && told !== null && told === before.generation ? null : told;
  return statusRecord(
    inOrder(
      {
        ...event,
        what: { ...event.what, ...(delta === undefined ? {} : { delta }) },
        system: {
          current: system.current,
          generation,
          ...(secrets === undefined ? {} : { secrets }),
          ...(reboot === undefined ? {} : { reboot }),
        },
        ...(previous === undefined ? {} : { previous }),
        origin,
        ...(event.agent === undefined && typeof before.agent === "string"
          ? { agent: before.agent }
          : {}),
      },
      before,
    ),
  );
}

/**
 * The generation a record names for the system a host runs: the profile's, when the profile is
 * on that system; else none (a pending boot, or a boot loader that fell back: the profile's
 * generation holds another system, and a record pairing the two would give its number to both).
 * `profile` undefined: the host did not say, and its generation is taken as the running one's.
 */
export function runningGeneration(host: {
  readonly current: string | null | undefined;
  readonly profile?: string | null | undefined;
  readonly generation: number | null | undefined;
}): number | null {
  if (host.generation === undefined || host.generation === null) return null;
  return host.profile === undefined || host.profile === host.current ? host.generation : null;
}

/**
 * `event`'s times kept in order: never updated before the record it follows (writers' clocks
 * differ: a deployer's and an agent's), never started after it was updated (a time taken before
 * another read later). The times are ISO-8601 from writers that checked them.
 */
function inOrder(event: RecordParts, before: StatusRecord | undefined): RecordParts {
  const updatedAt =
    before !== undefined && Date.parse(before.updatedAt) > Date.parse(event.updatedAt)
      ? before.updatedAt
      : event.updatedAt;
  const startedAt =
    Date.parse(event.startedAt) > Date.parse(updatedAt) ? updatedAt : event.startedAt;
  return { ...event, startedAt, updatedAt };
}
