// A wave's bakes on the dashboard's rollout page: per host, each query's values over time (the
// baseline's beside them), its condition, and what failed the host (a query, or a check).
import { formatValue } from "../fleet/analysis.js";
import type { RolloutHost } from "../status/rollout.js";
import type { RolloutAnalysis } from "../status/rollout-bake.js";
import { type Html, html } from "./html.js";

/** The bakes of a wave's hosts, or nothing when none baked. */
export function bakeSection(wave: number, hosts: readonly RolloutHost[]): Html | string {
  const baked = hosts.filter((h) => h.bake !== undefined);
  if (baked.length === 0) return "";
  return html`<div class="scroll bake"><table>
<caption>Bake of wave ${wave}: each query's values over time (seconds into the bake)</caption>
<thead><tr><th scope="col">Host</th><th scope="col">Bake</th><th scope="col">Query</th><th scope="col">Condition</th><th scope="col">Values</th><th scope="col">Failed</th></tr></thead>
<tbody>${baked.map((h) => hostRows(h))}</tbody></table></div>`;
}

function hostRows(h: RolloutHost): Html[] {
  const bake = h.bake;
  if (bake === undefined) return [];
  const state = html`<span class="badge ${bake.state === "failed" ? "failed" : bake.state === "passed" ? "in-step" : "applying"}">${bake.state}</span> ${bake.seconds}s, every ${bake.interval}s`;
  const check =
    bake.check === undefined
      ? []
      : [
          html`<tr class="failed" data-host="${h.host}"><th scope="row">${h.host}</th><td>${state}</td><td>check <code>${"url" in bake.check ? bake.check.url : bake.check.run}</code></td><td>${"url" in bake.check ? "answers as expected" : "exits 0"}</td><td></td><td class="error">${bake.check.message}</td></tr>`,
        ];
  const queries = bake.analysis.map(
    (a) =>
      html`<tr class="${a.failed === undefined ? "" : "failed"}" data-host="${h.host}" data-query="${a.name}"><th scope="row">${h.host}</th><td>${state}</td><td>${a.name} <code>${a.query}</code></td><td>${a.condition}</td><td class="values">${values(a)}</td><td class="error">${a.failed ?? ""}</td></tr>`,
  );
  if (check.length === 0 && queries.length === 0) {
    return [
      html`<tr data-host="${h.host}"><th scope="row">${h.host}</th><td>${state}</td><td colspan="4">its checks, repeated</td></tr>`,
    ];
  }
  return [...check, ...queries];
}

/** `2s 0.01, 4s 0.31 (baseline 0.1) ✗`: each measurement, a failed one marked. */
function values(a: RolloutAnalysis): Html[] {
  return a.measurements.map((m, i) => {
    const value = m.value === null ? "no data" : formatValue(m.value);
    const baseline =
      m.baseline === undefined
        ? ""
        : ` (baseline ${m.baseline === null ? "no data" : formatValue(m.baseline)})`;
    const mark = m.verdict === "fail" ? " ✗" : "";
    return html`${i === 0 ? "" : ", "}<span class="${m.verdict}" title="${m.why}">${m.at}s ${value}${baseline}${mark}</span>`;
  });
}
