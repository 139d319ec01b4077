// The dashboard's pages, rendered on the server from a snapshot: every value from the store goes
// through `html` (escaped). A page's <main> is what the client script replaces when the snapshot
// changes, so the first render and every live update are the same code.

import { formatClosureDiff } from "../nix/closure-diff.js";
import type { OriginCheck } from "../release/release-origin.js";
import { behindText } from "../status/behind.js";
import {
  failedBeforeAnyChange,
  type RolloutHost,
  type RolloutHostState,
} from "../status/rollout.js";
import { deltaText } from "../ui/delta-text.js";
import { originText, shownOriginText } from "../ui/origin-text.js";
import type { HostChange } from "../views/host-change.js";
import { HOST_STATES, hostState } from "../views/host-state.js";
import type { BoardChannel, BoardRelease, ReleaseTrust } from "../views/release-board.js";
import { HISTORY_ROLLOUTS, type HostRollout } from "../views/rollout-watch.js";
import { failedInRollout, type StatusRow } from "../views/status-rows.js";
import { ago, agoTime } from "./format.js";
import { Html, html } from "./html.js";
import type { ReleasePageData } from "./release-reads.js";
import {
  countByStateAndMode,
  generationOf,
  type HostFilter,
  lastSeen,
  runningOf,
  type Snapshot,
  seenAhead,
  shortSystem,
} from "./snapshot.js";

/** Hosts a page of the host table shows. */
export const HOSTS_PER_PAGE = 200;

export type Section = "hosts" | "releases" | "rollout";

export interface PageFrame {
  readonly title: string;
  readonly section: Section | undefined;
  readonly fleetName: string;
  readonly snapshot: Snapshot;
  /** Why the last poll failed (the snapshot is older). */
  readonly pollError: string | undefined;
}

/**
 * A page's content: `live`, which the client script replaces when the snapshot changes, and
 * `controls` above it (the filters), which it leaves alone so typing is never interrupted.
 */
export interface PageMain {
  readonly controls?: Html;
  readonly live: Html;
}

/** A whole page: the frame around its content. */
export function page(frame: PageFrame, main: PageMain): Html {
  const link = (section: Section, label: string) =>
    html`<a href="${section === "hosts" ? "/" : `/${section}`}"${
      frame.section === section ? new Html(' aria-current="page"') : ""
    }>${label}</a>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${frame.title} · nixship</title>
<link rel="stylesheet" href="/assets/style.css">
<script type="module" src="/assets/app.js"></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
<span class="brand">nixship</span> <span class="fleet">${frame.fleetName}</span>
<nav aria-label="Sections">${link("hosts", "Hosts")} ${link("releases", "Releases")} ${link("rollout", "Rollout")}</nav>
</header>
<main id="main">
${main.controls ?? ""}
<div id="live" data-version="${frame.snapshot.version}">
${main.live}
${pollStatus(frame)}
</div>
</main>
</body>
</html>
`;
}

function pollStatus(frame: PageFrame): Html {
  const { snapshot, pollError } = frame;
  return html`<footer class="poll" aria-live="polite">
${pollError === undefined ? "" : html`<p class="problem" role="alert">The store could not be read: ${pollError}. Showing what was read ${ago(snapshot.at, new Date())}.</p>`}
${snapshot.warnings.map((w) => html`<p class="problem">${w}</p>`)}
<p>Read from the store at <time datetime="${snapshot.at}">${snapshot.at}</time>.</p>
</footer>`;
}

// ---------------------------------------------------------------- hosts

export interface HostsQuery extends HostFilter {
  readonly page: number;
}

export function hostsMain(
  snapshot: Snapshot,
  rows: readonly StatusRow[],
  tags: readonly string[],
  query: HostsQuery,
): PageMain {
  const now = new Date(snapshot.at);
  const pages = Math.max(1, Math.ceil(rows.length / HOSTS_PER_PAGE));
  const pageNo = Math.min(Math.max(1, query.page), pages);
  const shown = rows.slice((pageNo - 1) * HOSTS_PER_PAGE, pageNo * HOSTS_PER_PAGE);
  const controls = html`<h1>Hosts</h1>
<form class="filters" method="get" action="/" role="search">
<label for="f-tag">Tag</label>
<select id="f-tag" name="tag"><option value="">any</option>${tags.map(
    (t) => html`<option value="${t}"${t === query.tag ? new Html(" selected") : ""}>${t}</option>`,
  )}</select>
<label for="f-state">State</label>
<select id="f-state" name="state"><option value="">any</option>${HOST_STATES.map(
    (s) =>
      html`<option value="${s}"${s === query.state ? new Html(" selected") : ""}>${s}</option>`,
  )}</select>
<label for="f-q">Name</label>
<input id="f-q" name="q" type="search" value="${query.query ?? ""}" placeholder="part of a name">
<button type="submit">Filter</button>
</form>`;
  const live = html`${summary(snapshot.rows)}
<p class="count" id="host-count">${rows.length} of ${snapshot.rows.length} hosts${
    pages > 1 ? ` · page ${pageNo} of ${pages}` : ""
  }</p>
<div class="scroll">
<table class="hosts">
<caption class="sr-only">Hosts, their systems and their last results</caption>
<thead><tr><th scope="col">Host</th><th scope="col">State</th><th scope="col">Tags</th><th scope="col">Mode</th><th scope="col">System</th><th scope="col">Gen.</th><th scope="col">Last result</th><th scope="col">Last seen</th></tr></thead>
<tbody>
${shown.map((row) => hostRow(row, snapshot.tags.get(row.host) ?? [], now))}
</tbody>
</table>
</div>
${pager(query, pageNo, pages)}`;
  return { controls, live };
}

function summary(rows: readonly StatusRow[]): Html {
  const counts = countByStateAndMode(rows);
  const items = HOST_STATES.flatMap((state) => {
    const byMode = counts.get(state);
    if (byMode === undefined) return [];
    const n = [...byMode.values()].reduce((a, b) => a + b, 0);
    return [html`<li><a class="badge ${state}" href="/?state=${state}">${n} ${state}</a></li>`];
  });
  return html`<ul class="summary" aria-label="Hosts by state">${items}</ul>`;
}

function hostRow(row: StatusRow, tags: readonly string[], now: Date): Html {
  const state = hostState(row);
  const running = runningOf(row);
  const sys = shortSystem(running);
  const result =
    row.source === "stored" && row.state !== undefined
      ? html`${row.state}${row.phase ? html` <span class="muted">(${row.phase})</span>` : ""} ${agoTime(row.updatedAt, now)}`
      : row.source === "live"
        ? html`asked live`
        : html`<span class="muted">none</span>`;
  const error = row.source === "stored" ? (row.error ?? row.unreadable) : undefined;
  return html`<tr class="${state}" data-host="${row.host}">
<th scope="row"><a href="/hosts/${encodeURIComponent(row.host)}">${row.host}</a></th>
<td><span class="badge ${state}">${state}</span>${
    row.drift === undefined
      ? ""
      : html` <span class="drift-mark" title="runs ${row.drift.running}">drift</span>`
  }</td>
<td>${tags.map((t) => html`<span class="tag">${t}</span> `)}</td>
<td>${row.mode}</td>
<td>${sys === null ? html`<span class="muted">unknown</span>` : html`<span title="${running}">${sys.name} <code>${sys.hash}</code></span>`}</td>
<td>${generationOf(row) ?? ""}</td>
<td>${result}${error ? html`<div class="error">${error}</div>` : ""}</td>
<td>${lastSeenCell(row, now)}</td>
</tr>`;
}

function lastSeenCell(row: StatusRow, now: Date): Html {
  const seen = lastSeen(row, now);
  const ahead = seenAhead(row, now);
  return html`${
    seen === null ? html`<span class="muted">—</span>` : html`${agoTime(seen, now)}`
  }${ahead === null ? "" : html` <span class="error future-time" title="more than 5 minutes ahead of this machine's clock, so not taken as last seen">dated in the future: ${ahead}</span>`}`;
}

function pager(query: HostsQuery, pageNo: number, pages: number): Html {
  if (pages <= 1) return html``;
  const href = (p: number) => {
    const params = new URLSearchParams();
    if (query.tag) params.set("tag", query.tag);
    if (query.state) params.set("state", query.state);
    if (query.query) params.set("q", query.query);
    params.set("page", String(p));
    return `/?${params}`;
  };
  return html`<nav class="pager" aria-label="Pages">${
    pageNo > 1 ? html`<a href="${href(pageNo - 1)}" rel="prev">Previous</a>` : ""
  } <span>Page ${pageNo} of ${pages}</span> ${
    pageNo < pages ? html`<a href="${href(pageNo + 1)}" rel="next">Next</a>` : ""
  }</nav>`;
}

// ---------------------------------------------------------------- releases

export function releasesMain(channels: readonly BoardChannel[], now: Date): Html {
  if (channels.length === 0) {
    return html`<h1>Releases</h1><p>No channel has a release yet: agent hosts follow releases that <code>nixship deploy</code> publishes.</p>`;
  }
  return html`<h1>Releases</h1>${channels.map((c) => channelSection(c, now))}`;
}

function channelSection(c: BoardChannel, now: Date): Html {
  const id = `channel-${c.channel}`;
  return html`<section aria-labelledby="${id}">
<h2 id="${id}">Channel ${c.channel}</h2>
${currentLine(c, now)}${c.total > c.releases.length ? html`<p>Showing the newest ${c.releases.length} of ${c.total}.</p>` : ""}
<div class="scroll">
<table class="releases">
<caption class="sr-only">Releases of channel ${c.channel}</caption>
<thead><tr><th scope="col">Seq</th><th scope="col">Signature</th><th scope="col">Kind</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Hosts</th><th scope="col">Applied</th><th scope="col">Failed</th><th scope="col">Pending</th></tr></thead>
<tbody>${c.releases.map(
    (r) => html`<tr class="${rowClass(r)}" data-seq="${r.seq}">
<th scope="row"><a href="/releases/${c.channel}/${r.seq}">${r.seq}</a>${currentBadge(r)}</th>
<td>${trustCell(r.trust)}</td>
${
  r.status === "ok"
    ? html`<td>${r.kind}</td><td>${agoTime(r.created, now)}</td><td>${r.expires === undefined ? "" : html`${agoTime(r.expires, now)}`}${r.expired ? html` <span class="badge failed">expired</span>` : ""}</td><td>${r.hosts}</td>`
    : html`<td colspan="4" class="error">${r.problem}</td>`
}
<td>${r.counts?.applied ?? "—"}</td><td>${r.counts?.failed ?? "—"}</td><td>${r.counts?.pending ?? "—"}</td>
</tr>`,
  )}</tbody>
</table>
</div>
</section>`;
}

/** What the channel names: plainly only when the fleet's keys signed it. */
function currentLine(c: BoardChannel, now: Date): Html {
  const trust = c.currentTrust;
  if (trust === null) return html`<p>The channel names no release.</p>`;
  const names =
    c.currentSeq === null ? "a release no listed file holds" : `release ${c.currentSeq}`;
  if (trust.status === "refused") {
    return html`<p class="problem untrusted-current" role="alert"><span class="badge failed">${trust.status}</span> The channel names ${names}, signed by <code>${trust.key}</code>, which nixship refuses: the agents of the shard at fault refuse it, the others may apply their entries. ${trust.problem}</p>`;
  }
  if (trust.status !== "trusted") {
    return html`<p class="problem untrusted-current" role="alert"><span class="badge failed">${trust.status}</span> The channel names ${names}, which no key the fleet trusts signed: agents will not follow it. ${trust.problem}</p>`;
  }
  return c.currentSeq === null
    ? html`<p>The channel names ${names}.</p>`
    : html`<p>Current release <strong>${c.currentSeq}</strong>, signed by <code>${trust.key}</code>, expires ${agoTime(c.expires, now)}.</p>`;
}

function rowClass(r: BoardRelease): string {
  return [r.current ? "current" : "", r.trust.status].filter((x) => x !== "").join(" ");
}

function currentBadge(r: BoardRelease): Html | string {
  if (!r.current) return "";
  return r.trust.status === "trusted"
    ? html` <span class="badge in-step">current</span>`
    : html` <span class="badge failed">current, ${r.trust.status}</span>`;
}

function trustCell(trust: ReleaseTrust): Html {
  return trust.status === "trusted"
    ? html`<code>${trust.key}</code>`
    : html`<span class="badge failed trust" title="${trust.problem}">${trust.status}</span>`;
}

export function releaseMain(
  data: ReleasePageData,
  running: ReadonlyMap<string, string | null>,
  now: Date,
): Html {
  const { channel, seq, trust, lines } = data;
  const head =
    trust.status === "trusted"
      ? html`<p>Signed by <code>${trust.key}</code>, a key the fleet trusts.</p>`
      : trust.status === "refused"
        ? html`<p class="problem untrusted-release" role="alert"><span class="badge failed">${trust.status}</span> Signed by <code>${trust.key}</code>, a key the fleet trusts, but nixship refuses this release: the agents of the shard at fault refuse it, the others may apply their entries. ${trust.problem}</p>`
        : html`<p class="problem untrusted-release" role="alert"><span class="badge failed">${trust.status}</span> No key the fleet trusts signed this release: agents will not follow it. ${trust.problem}</p>`;
  const published = releaseOrigin(data.origin);
  if (data.problem !== undefined) {
    return html`<h1>Release ${seq} of channel ${channel}</h1>${head}${published}<p class="problem">${data.problem}</p>`;
  }
  return html`<h1>Release ${seq} of channel ${channel}</h1>
${head}
${published}
<p>Created ${agoTime(data.created, now)}; it names ${data.hosts} hosts${data.hosts > lines.length ? `, the first ${lines.length} shown` : ""}.</p>
<div class="scroll"><table>
<caption class="sr-only">Hosts release ${seq} names</caption>
<thead><tr><th scope="col">Host</th><th scope="col">For this release</th><th scope="col">System it names</th><th scope="col">Runs now</th></tr></thead>
<tbody>${lines.map((l) => {
    const named = shortSystem(l.path);
    const now = running.get(l.host) ?? null;
    const runs = shortSystem(now);
    return html`<tr><th scope="row"><a href="/hosts/${l.host}">${l.host}</a></th><td>${l.state ?? "pending"}</td><td title="${l.path}">${named?.name} <code>${named?.hash}</code></td><td${now === l.path ? "" : new Html(' class="differs"')}>${runs === null ? "unknown" : html`${runs.name} <code>${runs.hash}</code>`}</td></tr>`;
  })}</tbody></table></div>`;
}

/** Who published a release and from what: only what a trusted key signed is shown as true. */
function releaseOrigin(origin: OriginCheck): Html {
  switch (origin.status) {
    case "none":
      return html`<p class="release-origin">Who published it is not recorded.</p>`;
    case "untrusted":
      return html`<p class="problem release-origin" role="alert"><span class="badge failed">origin untrusted</span> Who published it is not known: the origin document beside it is not to be believed (${origin.problem}).</p>`;
    case "trusted":
      return html`<p class="release-origin">Published ${originText(origin)}.</p>`;
  }
}

// ---------------------------------------------------------------- one host

export interface HostDetail {
  readonly row: StatusRow;
  readonly tags: readonly string[];
  readonly history: readonly HostRollout[];
  /** The closure diff of its last change, or why there is none. */
  readonly change: HostChange;
}

export function hostMain(detail: HostDetail, now: Date): Html {
  const { row } = detail;
  const state = hostState(row);
  const running = runningOf(row);
  const fields: [string, unknown][] = [
    ["State", html`<span class="badge ${state}">${state}</span>`],
    ["Mode", row.mode],
    ["Tags", detail.tags.join(", ")],
    ["Runs", running ?? "unknown"],
    ["Generation", generationOf(row) ?? ""],
  ];
  if (row.source === "stored") {
    fields.push(
      ["Given", row.desired ?? ""],
      ["Before that", row.previous ?? ""],
      [
        "Last result",
        row.state === undefined ? "none" : `${row.state}${row.phase ? ` (${row.phase})` : ""}`,
      ],
      ["When", row.updatedAt ? html`${agoTime(row.updatedAt, now)}` : ""],
      ["Last seen", lastSeenCell(row, now)],
    );
    if (row.channel) fields.push(["Release", `${row.channel} ${row.seq}`]);
    if (row.error) fields.push(["Error", html`<span class="error">${row.error}</span>`]);
    if (row.unreadable) fields.push(["Record", html`<span class="error">${row.unreadable}</span>`]);
  }
  if (row.origin !== undefined) {
    const o = row.origin;
    fields.push([
      "Put there",
      html`<span class="${o.problem === null ? "origin" : "origin problem"}">${shownOriginText(o)}</span>`,
    ]);
  }
  if (row.behindRollout !== undefined) {
    // A failure its record tells names the rollout it failed in, as the status table does.
    fields.push(
      failedInRollout(row)
        ? ["Failed in", html`rollout <code>${row.behindRollout.rollout}</code>`]
        : [
            "Behind",
            html`<span class="badge behind">behind</span> ${behindText(row.behindRollout).replace(/^behind /, "")}`,
          ],
    );
  }
  if (row.failureUndone !== undefined) {
    fields.push([
      "Failed in",
      html`rollout <code>${row.failureUndone}</code>, undone since: it runs what it ran before`,
    ]);
  }
  const fetched = deltaText(row.delta);
  if (fetched !== undefined) fields.push(["Fetched", fetched]);
  if (row.drift !== undefined) {
    fields.push([
      "Drift",
      html`<span class="badge drifting">drifting</span> runs ${row.drift.running}, which nixship did not leave on it (it left: ${row.drift.expected.join(", ")})`,
    ]);
  }
  const log = row.source === "stored" ? row.log : undefined;
  // What it runs, what each rollout found on it, and what one activated there (a system a
  // rollout named for it but never reached it with, or was refused, it never ran).
  const systems = [
    ...new Set(
      [
        running,
        ...detail.history.flatMap((h) => [h.entry.before, ran(h.entry) ? h.entry.system : null]),
      ].filter((s): s is string => typeof s === "string"),
    ),
  ];
  return html`<h1>Host ${row.host}</h1>
<dl class="facts">${fields.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
${log === undefined ? "" : html`<h2>Activation log</h2><pre class="log">${log.lines.join("\n")}</pre>`}
<h2>Results</h2>
${historyScope(row, detail.history)}
${
  detail.history.length === 0
    ? ""
    : html`<div class="scroll"><table><caption class="sr-only">Rollouts that named ${row.host}</caption>
<thead><tr><th scope="col">Started</th><th scope="col">Rollout</th><th scope="col">Action</th><th scope="col">Wave</th><th scope="col">Result</th><th scope="col">System</th><th scope="col">Message</th></tr></thead>
<tbody>${detail.history.map((h) => {
        const sys = shortSystem(h.entry.system);
        return html`<tr><td>${agoTime(h.startedAt, now)}</td><td>${h.id}</td><td>${h.undoes === undefined ? html`${h.action} (${h.mode})` : html`rollback of ${h.undoes} (${h.mode})`}</td><td>${h.wave ?? "left alone"}</td><td><span class="badge ${h.entry.state}">${h.entry.state}</span></td><td>${sys === null ? "" : html`${sys.name} <code>${sys.hash}</code>`}</td><td class="error">${h.entry.message ?? ""}</td></tr>`;
      })}</tbody></table></div>`
}
<h2>Systems it ran</h2>
<ul class="systems">${systems.map((s) => html`<li><code>${s}</code></li>`)}</ul>
<h2>Last change</h2>
${
  detail.change.status === "diff"
    ? html`<p>From <code>${detail.change.from}</code> to <code>${detail.change.to}</code>:</p><pre class="diff">${formatClosureDiff(detail.change.diff)}</pre>`
    : html`<p class="muted">${detail.change.why}</p>`
}`;
}

/**
 * What the host's results cover: the newest HISTORY_ROLLOUTS rollouts (the asks read further
 * back), and the rollout it is behind when that is older.
 */
function historyScope(row: StatusRow, history: readonly HostRollout[]): Html | string {
  const behind = row.behindRollout?.rollout;
  const older =
    behind === undefined || history.some((h) => h.id === behind)
      ? ""
      : html` The rollout it is behind, <code>${behind}</code>, is older than those.`;
  if (history.length > 0 && older === "") return "";
  const which =
    history.length === 0
      ? `None of the newest ${HISTORY_ROLLOUTS} rollouts names this host.`
      : `Of the newest ${HISTORY_ROLLOUTS} rollouts, those that name this host.`;
  return html`<p class="history-scope">${which}${older}</p>`;
}

/** A rollout host's states in which it ran the system the rollout named for it. */
const RAN: ReadonlySet<RolloutHostState> = new Set([
  "health",
  "baking",
  "confirmed",
  "failed",
  "rolled-back",
  "up-to-date",
]);

/**
 * Whether the host ran the system the rollout named for it: not when it failed (or went back)
 * before anything of it changed (connect, copy, realise, or its agent never took the release).
 */
function ran(entry: Pick<RolloutHost, "state" | "phase">): boolean {
  if (!RAN.has(entry.state)) return false;
  const failed = entry.state === "failed" || entry.state === "rolled-back";
  return !(failed && failedBeforeAnyChange(entry.phase));
}

/** A page for what does not exist. */
export function notFoundMain(what: string): Html {
  return html`<h1>Not found</h1><p>${what}</p><p><a href="/">All hosts</a></p>`;
}
