// `nixship rollback` of a rollout (the default, or --rollout ID): its plan (undo-format.ts),
// then a deploy of what each host it changed ran before, recorded as a rollout of its own that
// names the rollout it undoes and every host it leaves where it is.
import type { DeployOptions } from "../deploy/deploy-options.js";
import { deployOrigin } from "../deploy/deploy-origin.js";
import { deliveryMode, openDelivery } from "../deploy/open-delivery.js";
import { recordRollout } from "../deploy/rollout-recorder.js";
import type { Fleet, FleetHost, RolloutPolicy } from "../fleet/fleet.js";
import type { PolicyOverride } from "../fleet/host-policy.js";
import type { SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { futureRolloutText } from "../status/future-rollouts.js";
import type { RolloutHost, RolloutRecord } from "../status/rollout.js";
import { leftByUndo } from "../status/undo-rollout.js";
import { formatUndoPlan } from "../ui/undo-format.js";
import { mapLimit } from "../util/pool.js";
import { readUndo } from "../views/rollout-undo.js";
import type { CliIO } from "./command.js";
import { importMissingSystems, withGivenSystems } from "./given-systems.js";
import { rollOut, type SummaryEvent } from "./roll-out.js";

export interface UndoOptions {
  readonly fleet: Fleet;
  readonly fleetDir: string;
  readonly id: string | undefined;
  readonly selected: readonly FleetHost[] | undefined;
  readonly force: boolean;
  readonly json: boolean;
  readonly policy: RolloutPolicy;
  /** The command's policy flags, which win over each host's role (as in the deploy). */
  readonly policyFlags: PolicyOverride;
  readonly key: SecretKey | undefined;
  readonly serveCache: DeployOptions["serveCache"];
  readonly releaseKey: SecretKey | undefined;
  /** The flags a command that undoes this rollback needs again (--fleet, --key, --release-key). */
  readonly again?: string;
  /**
   * With `json`: the rollback's summary is handed here instead of printed (a deploy aborted at a
   * pause prints one summary that carries it).
   */
  readonly onSummary?: (summary: SummaryEvent) => void;
}

/** Exit code: 0 when every host to go back went back and none was refused, else 1. */
export async function undoRollout(io: CliIO, o: UndoOptions): Promise<number> {
  const read = await readUndo(o.fleet, {
    id: o.id,
    selected: o.selected,
    force: o.force,
    askLive: (hosts) => askSsmHosts(o.fleet, o.fleetDir, hosts),
  });
  if (read.futureRollout !== undefined) {
    io.stderr.write(`warning: ${futureRolloutText(read.futureRollout)}\n`);
  }
  if (read.abandoned !== undefined) {
    io.stderr.write(
      `note: rollout ${read.record.id} says ${read.record.state}, but ${read.abandoned}: undoing what it did, hosts it left mid-activation included\n`,
    );
  }
  if (o.json) {
    io.stdout.write(
      `${JSON.stringify({ type: "undo-plan", rollout: read.record.id, steps: read.steps, gone: read.gone })}\n`,
    );
  } else io.stderr.write(formatUndoPlan(read));
  // A host the rollout changed that the fleet file has no more is not undone: as a refusal.
  const refused = read.steps.some((s) => s.kind === "refused") || read.goneChanged.length > 0;
  const back = read.steps.flatMap((s) => (s.kind === "back" ? [s] : []));
  const left = leftByUndo(read.steps);
  if (back.length === 0) {
    // Nothing goes back, yet the rollout is undone: its record says so, so that it asks
    // nothing any more of the hosts it never changed (they are behind it no longer).
    if (left.length > 0) await recordUndone(io, o, read.record, left);
    return refused ? 1 : 0;
  }

  // The deploy names only the hosts that go back, each with what it goes back to: a host the
  // rollout never changed is neither surveyed nor judged nor activated (a boot it has pending
  // is not this rollback's to judge).
  const systems = new Map(back.map((s) => [s.host, s.to as StorePath] as const));
  // A system the cache no longer holds (collected) is most often still on the hosts, an
  // earlier generation: going back there needs no copy.
  const goingBack = (path: StorePath) => back.filter((s) => s.to === path).map((s) => s.host);
  await importMissingSystems(
    o.fleet,
    [...new Set(systems.values())],
    (path) => `rollback of rollout ${read.record.id} to ${path}`,
    (path) => {
      const hosts = goingBack(path);
      const one = hosts.length === 1;
      const each = one ? "" : " (each host on its own: N may differ)";
      return `${hosts.join(", ")} most likely still hold${one ? "s" : ""} it as an earlier generation: 'nixship status --on ${hosts.join(",")} --json' lists ${one ? "its" : "their"} generations (hosts[].generations), and 'nixship rollback --on ${hosts[0] ?? "HOST"} --to N', N the generation that holds it, goes back with no copy${each}; or push it to the fleet's cache from a machine whose store holds it, and run this rollback again`;
    },
  );
  const fleet = withGivenSystems(o.fleet, systems);
  const hosts = fleet.hosts.filter((h) => systems.has(h.name));
  const { report, code, summary } = await rollOut(
    io,
    {
      json: o.json,
      diff: false,
      mode: deliveryMode(hosts, undefined),
      holdSummary: o.onSummary !== undefined,
      ...(o.again === undefined ? {} : { again: o.again }),
    },
    {
      fleet,
      fleetDir: o.fleetDir,
      selector: hosts.map((h) => h.name).join(","),
      action: "switch",
      policy: o.policy,
      policyFlags: o.policyFlags,
      key: o.key,
      serveCache: o.serveCache,
      releaseKey: o.releaseKey,
      // A host that must go back and cannot be reached is counted below.
      skipUnreachable: true,
      rollback: {
        undoes: read.record.id,
        left,
        // Each host goes back only if it still runs what the rollout left there when its turn
        // comes (checked on the host, or by the channel): a deploy that lands meanwhile stays.
        ...(o.force
          ? {}
          : { expect: new Map(back.map((s) => [s.host, s.from as StorePath] as const)) }),
      },
    },
  );
  if (summary !== undefined) o.onSummary?.(summary);
  const wentBack = new Set(
    (report?.results ?? []).flatMap((r) => (r.outcome.status === "activated" ? [r.host] : [])),
  );
  const missed = back.some((s) => !wentBack.has(s.host));
  return code !== 0 ? code : missed || refused ? 1 : 0;
}

/** The record of a rollback that sent no host back: the rollout it undoes, and each host left. */
async function recordUndone(
  io: CliIO,
  o: UndoOptions,
  undone: RolloutRecord,
  left: readonly RolloutHost[],
): Promise<void> {
  const record = await recordRollout(o.fleet.cache?.url, {
    mode: undone.mode,
    action: "switch",
    origin: await deployOrigin([], o.fleetDir),
    key: o.key,
    rollback: { undoes: undone.id, left },
    onWarning: (message) => io.stderr.write(`warning: ${message}\n`),
  });
  if (record === undefined) return;
  await record.finish("succeeded");
  if (!o.json) {
    const standing = left.filter((h) => h.state === "not-started").map((h) => h.host);
    io.stderr.write(
      standing.length === 0
        ? `rollback ${record.recorder.id} recorded: rollout ${undone.id} is undone, and asks nothing more of its hosts\n`
        : `rollback ${record.recorder.id} recorded: rollout ${undone.id} still stands for ${standing.join(", ")} (what ${standing.length === 1 ? "it runs" : "they run"} could not be told); the next 'nixship rollback' finishes it\n`,
    );
  }
}

/** Hosts asked at once for what they run. */
const LIVE_ASKS = 8;

/**
 * What each ssm host runs, asked through SSM (one status command each, as plan asks them);
 * null where it could not be told.
 */
async function askSsmHosts(
  fleet: Fleet,
  fleetDir: string,
  hosts: readonly FleetHost[],
): Promise<Map<string, string | null>> {
  const open = await openDelivery(fleet, hosts, { fleetDir, via: "ssm" });
  try {
    const answers = await mapLimit(hosts, LIVE_ASKS, async (h) => {
      const s = await open.delivery.status(h);
      return [h.name, s.reachable ? (s.current ?? null) : null] as const;
    });
    return new Map(answers);
  } finally {
    await open.close();
  }
}
