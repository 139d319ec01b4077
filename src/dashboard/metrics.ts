// `/metrics` in Prometheus's text exposition format, through prom-client: the fleet as the last
// poll saw it (hosts by state and mode, drifting, reboot due, each channel's current release and
// its expiry, the newest rollout, what hosts fetched by delta), and the dashboard's own polling.
// Values are taken from the poller when Prometheus scrapes, so a scrape never reads the store.
import { Counter, Gauge, Registry } from "prom-client";
import { DELIVERY_MODES } from "../fleet/fleet.js";
import { type DeltaTotals, sumDeltaReports } from "../status/delta-report.js";
import { ROLLOUT_HOST_STATES, ROLLOUT_STATES } from "../status/rollout.js";
import { HOST_STATES } from "../views/host-state.js";
import type { StatusRow } from "../views/status-rows.js";
import type { FleetPoller } from "./poller.js";
import { countByStateAndMode, rebootDue, rolloutCounts, shownRollout } from "./snapshot.js";

export interface DashboardMetrics {
  readonly registry: Registry;
  /** Counts one event stream opened or closed. */
  readonly sseClients: Gauge;
}

/** The server's connections, once it listens. */
export interface ConnectionCounts {
  readonly open: () => number;
  readonly shed: () => number;
}

export function dashboardMetrics(
  poller: FleetPoller,
  connections: () => ConnectionCounts | undefined,
): DashboardMetrics {
  const registry = new Registry();
  const snapshot = () => poller.snapshot;

  new Gauge({
    name: "nixship_hosts",
    help: "Hosts of the fleet by state and delivery mode, as the last poll of the store saw them",
    labelNames: ["state", "mode"],
    registers: [registry],
    collect() {
      this.reset();
      const s = snapshot();
      if (s === undefined) return;
      const counts = countByStateAndMode(s.rows);
      for (const state of HOST_STATES) {
        for (const mode of DELIVERY_MODES) {
          this.set({ state, mode }, counts.get(state)?.get(mode) ?? 0);
        }
      }
    },
  });
  new Gauge({
    name: "nixship_hosts_drifting",
    help: "Hosts that run a system nixship did not leave on them",
    registers: [registry],
    collect() {
      this.set(snapshot()?.rows.filter((r) => r.drift !== undefined).length ?? 0);
    },
  });
  new Gauge({
    name: "nixship_hosts_reboot_due",
    help: "Hosts whose last report says a reboot would load a new kernel, initrd or modules",
    registers: [registry],
    collect() {
      this.set(snapshot()?.rows.filter(rebootDue).length ?? 0);
    },
  });
  new Gauge({
    name: "nixship_channel_release_seq",
    help: "The release each channel names",
    labelNames: ["channel"],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of snapshot()?.channels ?? []) {
        // Only a release the fleet's keys signed is a channel's release to alert on.
        if (c.currentSeq !== null && c.currentTrust?.status === "trusted") {
          this.set({ channel: c.channel }, c.currentSeq);
        }
      }
    },
  });
  new Gauge({
    name: "nixship_channel_release_trusted",
    help: "1 when the release a channel names is signed by a key of the fleet's releases.publicKeys and not refused (every shard sound), else 0",
    labelNames: ["channel"],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of snapshot()?.channels ?? []) {
        if (c.currentTrust !== null) {
          this.set({ channel: c.channel }, c.currentTrust.status === "trusted" ? 1 : 0);
        }
      }
    },
  });
  new Gauge({
    name: "nixship_channel_release_expiry_seconds",
    help: "Seconds until each channel's current release expires (negative: expired)",
    labelNames: ["channel"],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of snapshot()?.channels ?? []) {
        if (c.expires !== null) {
          this.set({ channel: c.channel }, (Date.parse(c.expires) - Date.now()) / 1000);
        }
      }
    },
  });
  new Gauge({
    name: "nixship_rollout_state",
    help: "The newest rollout's state: 1 for the state it is in, 0 for the others",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.reset();
      const record = shownRollout(snapshot());
      if (record === undefined) return;
      for (const state of ROLLOUT_STATES) this.set({ state }, record.state === state ? 1 : 0);
    },
  });
  new Gauge({
    name: "nixship_rollout_hosts",
    help: "Hosts of the newest rollout by state",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      this.reset();
      const record = shownRollout(snapshot());
      if (record === undefined) return;
      const counts = rolloutCounts(record);
      for (const state of ROLLOUT_HOST_STATES) this.set({ state }, counts.get(state) ?? 0);
    },
  });
  new Gauge({
    name: "nixship_fetched_paths",
    help: "Store paths the hosts fetched to get the systems they run, by how: by delta, or whole (hosts whose record says; docs/deltas.md)",
    labelNames: ["by"],
    registers: [registry],
    collect() {
      this.reset();
      const totals = deltaTotals(snapshot()?.rows);
      if (totals === undefined) return;
      this.set({ by: "delta" }, totals.paths);
      this.set({ by: "whole" }, totals.wholePaths);
    },
  });
  new Gauge({
    name: "nixship_fetched_bytes",
    help: "Bytes the hosts fetched to get the systems they run: delta (the deltas), delta_nar (the NARs they rebuilt), whole_nar (the NARs fetched whole)",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      this.reset();
      const totals = deltaTotals(snapshot()?.rows);
      if (totals === undefined) return;
      const kinds = [
        ["delta", totals.bytes],
        ["delta_nar", totals.narBytes],
        ["whole_nar", totals.wholeNarBytes],
      ] as const;
      for (const [kind, bytes] of kinds) if (bytes !== null) this.set({ kind }, bytes);
    },
  });
  new Gauge({
    name: "nixship_hosts_fetched_by_delta",
    help: "Hosts whose record says how they fetched the system they run with deltas on",
    registers: [registry],
    collect() {
      this.set(deltaTotals(snapshot()?.rows)?.counted ?? 0);
    },
  });
  new Counter({
    name: "nixship_dashboard_polls_total",
    help: "Polls of the store the dashboard made",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(poller.polls);
    },
  });
  new Counter({
    name: "nixship_dashboard_store_requests_total",
    help: "Requests the dashboard sent to the store, by kind",
    labelNames: ["kind"],
    registers: [registry],
    collect() {
      this.reset();
      const { list, get, head } = poller.requests;
      this.inc({ kind: "list" }, list);
      this.inc({ kind: "get" }, get);
      this.inc({ kind: "head" }, head);
    },
  });
  new Gauge({
    name: "nixship_dashboard_poll_seconds",
    help: "How long the last poll of the store took",
    registers: [registry],
    collect() {
      this.set(poller.lastPoll?.seconds ?? 0);
    },
  });
  new Gauge({
    name: "nixship_dashboard_poll_ok",
    help: "1 when the last poll of the store succeeded, else 0",
    registers: [registry],
    collect() {
      this.set(poller.lastPoll === undefined || poller.lastPoll.error !== undefined ? 0 : 1);
    },
  });
  new Gauge({
    name: "nixship_dashboard_connections",
    help: "Connections open to the dashboard",
    registers: [registry],
    collect() {
      this.set(connections()?.open() ?? 0);
    },
  });
  new Counter({
    name: "nixship_dashboard_connections_shed_total",
    help: "Connections the dashboard closed because they sent nothing in time or it had too many",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(connections()?.shed() ?? 0);
    },
  });
  const sseClients = new Gauge({
    name: "nixship_dashboard_event_streams",
    help: "Event streams (live pages) open",
    registers: [registry],
  });
  return { registry, sseClients };
}

/** What the hosts' records say they fetched by delta, summed; undefined before the first poll. */
function deltaTotals(rows: readonly StatusRow[] | undefined): DeltaTotals | undefined {
  return rows === undefined ? undefined : sumDeltaReports(rows.map((r) => r.delta));
}
