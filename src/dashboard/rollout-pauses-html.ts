// The rollout page's pauses: a rollout paused now says since when, until when and what then,
// and the commands that answer it; a pause that ended says who answered and when.
import type { RolloutPause, RolloutRecord } from "../status/rollout.js";
import { type Html, html } from "./html.js";

export function rolloutPauses(r: RolloutRecord): Html | string {
  const pauses = r.pauses ?? [];
  if (pauses.length === 0) return "";
  return html`<section class="pauses" aria-labelledby="pauses">
<h2 id="pauses">Pauses</h2>
<ul>${pauses.map((p) => html`<li class="pause">${pauseText(r, p)}</li>`)}</ul>
</section>`;
}

function pauseText(r: RolloutRecord, p: RolloutPause): Html {
  const after = `After wave ${p.afterWave}`;
  const a = p.answer;
  if (a !== undefined) {
    const how =
      a.action === "interrupted"
        ? "the deploy was interrupted while it waited"
        : a.timedOut === true
          ? `nobody answered by ${a.at}: ${a.action === "abort" ? "aborted" : "resumed"}, its default`
          : `${a.action === "abort" ? "aborted" : "resumed"} by ${a.by} at ${a.at}`;
    return html`${after}, paused since ${p.since}: ${how}.`;
  }
  if (r.state !== "paused") {
    return html`${after}, paused since ${p.since}: the deploy ended before any answer.`;
  }
  const then = p.onTimeout === "abort" ? "it aborts (rolls back)" : "it resumes";
  return html`<span class="badge behind">paused</span> ${after}, since ${p.since}, waiting for an operator until ${p.until}; then ${then}. To go on: <code>nixship rollout resume ${r.id}</code>. To stop and roll back the hosts it changed: <code>nixship rollout abort ${r.id}</code>.`;
}
