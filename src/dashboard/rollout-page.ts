// The dashboard's rollout page: the newest rollout record's waves, pauses, bakes and skipped
// hosts, rendered from a snapshot like every page (pages.ts holds the frame and the others).

import { rolloutAsShown } from "../status/ended-rollout.js";
import type { FutureRollout } from "../status/future-rollouts.js";
import {
  ROLLOUT_ABANDONED_SECONDS,
  ROLLOUT_QUIET_SECONDS,
  type RolloutHost,
  type RolloutRecord,
  type RolloutWave,
  rolloutGone,
  rolloutLive,
  rolloutQuiet,
} from "../status/rollout.js";
import { sourceReference } from "../util/source-reference.js";
import type { RolloutRead } from "../views/rollout-watch.js";
import { bakeSection } from "./bake-html.js";
import { agoTime } from "./format.js";
import { type Html, html } from "./html.js";
import { rolloutPauses } from "./rollout-pauses-html.js";
import { shortSystem } from "./snapshot.js";

export function rolloutMain(read: RolloutRead, future: FutureRollout | null, now: Date): Html {
  const ahead =
    future === null
      ? ""
      : html`<p class="problem future-rollout">A rollout record dated in the future (<code>${future.key}</code>, started ${future.startedAt}) was passed over: a record more than 5 minutes ahead of this machine's clock is not taken for the newest. A deployer's clock is wrong, or someone wrote it by hand.</p>`;
  if (read.status === "none") {
    return html`<h1>Rollout</h1>${ahead}<p>No rollout recorded yet: <code>nixship deploy</code> records each one as it runs.</p>`;
  }
  if (read.status === "unreadable") {
    // A record the fleet's cache key did not sign is read, and not shown as the fleet's rollout.
    const shown =
      read.disbelieved === undefined
        ? "The newest rollout record could not be read"
        : "The newest rollout record is not shown";
    return html`<h1>Rollout</h1>${ahead}<p class="problem">${shown}: ${read.problem}</p>`;
  }
  // A record whose deployer is gone is shown as it ended there (ended-rollout.ts).
  const gone = rolloutGone(read.record, now);
  const r = rolloutAsShown(read.record, now);
  return html`<h1>Rollout ${r.id}</h1>${ahead}
<p class="rollout-head"><span class="badge ${rolloutClass(r)}">${r.state}</span> ${r.action} over ${r.mode}, started ${agoTime(r.startedAt, now)}, last written ${agoTime(r.updatedAt, now)}.</p>
${gone === undefined ? "" : html`<p class="problem rollout-gone">Its record says ${read.record.state}, but ${gone}: its deploy is gone, and the rollout is shown as interrupted there (hosts it had not started never were). <code>nixship rollback --rollout ${r.id}</code> undoes what it changed.</p>`}
${gone !== undefined || !rolloutQuiet(read.record, now) ? "" : html`<p class="problem rollout-gone">Its record says ${read.record.state}, but its deploy has not written it for more than ${ROLLOUT_QUIET_SECONDS / 60} minutes (a live one writes it every minute): it is shown as interrupted there, as its hosts are. A rollback of it waits until it is ${ROLLOUT_ABANDONED_SECONDS / 60} minutes quiet (clocks may be minutes apart).</p>`}
${origin(r)}
${r.undoes === undefined ? "" : html`<p class="rollout-undoes">A rollback: it undoes rollout <code>${r.undoes}</code>, sending each host it changed back to what it ran before it.</p>`}
${r.stopped === null ? "" : html`<p class="problem">Stopped: ${r.stopped}</p>`}
${rolloutPauses(r)}
${r.waves.map((w) => waveSection(w, rolloutLive(r.state)))}
${r.skipped === undefined || r.skipped.length === 0 ? "" : skippedSection(r.skipped)}`;
}

/** Who started the rollout, and from which flakes at which commits (absent in older records). */
function origin(r: RolloutRecord): Html | string {
  if (r.by === undefined) return "";
  const sources = (r.sources ?? []).map(
    (s) =>
      html` <code>${sourceReference(s.flake)}</code>${s.rev === null ? "" : html` at <code>${s.rev.slice(0, 12)}</code>`}${s.dirty ? html` <span class="badge failed">dirty</span>` : ""}`,
  );
  return html`<p class="rollout-origin">Started by ${r.by}${sources.length > 0 ? html`, from${sources}` : ""}.</p>`;
}

/** The selected hosts the rollout leaves alone: up to date, unreachable, or (a rollback's) refused. */
function skippedSection(hosts: readonly RolloutHost[]): Html {
  return html`<section class="wave" aria-labelledby="skipped">
<h2 id="skipped">Skipped</h2>
<div class="scroll"><table>
<caption class="sr-only">Hosts the rollout leaves alone</caption>
<thead><tr><th scope="col">Host</th><th scope="col">Why</th><th scope="col">State</th></tr></thead>
<tbody>${hosts.map((h) => html`<tr class="skipped" data-host="${h.host}"><th scope="row"><a href="/hosts/${h.host}">${h.host}</a></th><td>${h.message ?? ""}</td><td><span class="badge ${h.state}">${stateLabel(h.state, false)}</span></td></tr>`)}</tbody></table></div>
</section>`;
}

function rolloutClass(r: RolloutRecord): string {
  switch (r.state) {
    case "succeeded":
      return "in-step";
    case "running":
      return "applying";
    case "paused":
    case "partial":
      return "behind";
    default:
      return "failed";
  }
}

/**
 * What a host's state reads as: a host still pending once the rollout ended was never started
 * (a failure stopped the rollout, or the deploy was interrupted), and never will be.
 */
function stateLabel(state: RolloutHost["state"], running: boolean): string {
  if (state === "pending" && !running) return "not started";
  return state === "not-started" || state === "up-to-date" ? state.replace(/-/g, " ") : state;
}

function waveSection(w: RolloutWave, running: boolean): Html {
  const counts = new Map<RolloutHost["state"], number>();
  for (const h of w.hosts) counts.set(h.state, (counts.get(h.state) ?? 0) + 1);
  const id = `wave-${w.index}`;
  return html`<section class="wave" aria-labelledby="${id}">
<h2 id="${id}">Wave ${w.index} (${w.kind})</h2>
<p class="wave-counts">${[...counts].map(([s, n]) => html`<span class="badge ${s}">${n} ${stateLabel(s, running)}</span> `)}</p>
<div class="scroll"><table>
<caption class="sr-only">Hosts of wave ${w.index}</caption>
<thead><tr><th scope="col">Host</th><th scope="col">State</th><th scope="col">Step</th><th scope="col">System</th><th scope="col">Message</th></tr></thead>
<tbody>${w.hosts.map((h) => {
    const sys = shortSystem(h.system);
    return html`<tr class="${h.state}" data-host="${h.host}"><th scope="row"><a href="/hosts/${h.host}">${h.host}</a></th><td><span class="badge ${h.state}">${stateLabel(h.state, running)}</span></td><td>${h.phase ?? ""}</td><td>${sys === null ? "" : html`${sys.name} <code>${sys.hash}</code>`}</td><td class="error">${h.message ?? ""}</td></tr>`;
  })}</tbody></table></div>
${bakeSection(w.index, w.hosts)}
</section>`;
}
