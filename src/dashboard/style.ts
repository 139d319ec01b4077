// The dashboard's stylesheet, served from the package (no CDN): readable at 1280×800 and at a
// phone's width, states told by words as well as colours, focus always visible.
export const DASHBOARD_CSS = `
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #5c6670; --line: #d7dce1;
  --ok: #11652f; --okbg: #dcf5e3; --bad: #9b1c1c; --badbg: #fde2e2; --warn: #7a4b00; --warnbg: #fff1cc;
  --info: #174ea6; --infobg: #e1ecff; --link: #0b57d0; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ec; --bg: #121417; --muted: #9aa4ae; --line: #30363d;
  --okbg: #143d22; --ok: #8fe0a8; --badbg: #4a1717; --bad: #ffb4b4; --warnbg: #44330a; --warn: #ffd98a;
  --infobg: #14284d; --info: #a8c7ff; --link: #8ab4f8; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--link); }
a:focus-visible, button:focus-visible, select:focus-visible, input:focus-visible { outline: 3px solid var(--link); outline-offset: 2px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: var(--bg); padding: 4px 8px; z-index: 2; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
header { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: baseline; padding: 10px 16px; border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; } .fleet { color: var(--muted); }
nav a { margin-right: 12px; text-decoration: none; } nav a[aria-current="page"] { font-weight: 700; text-decoration: underline; }
main { padding: 12px 16px 32px; max-width: 1400px; }
h1 { font-size: 1.4rem; margin: 4px 0 12px; } h2 { font-size: 1.1rem; margin: 20px 0 8px; }
.summary { list-style: none; display: flex; flex-wrap: wrap; gap: 6px; padding: 0; margin: 0 0 12px; }
.summary a { text-decoration: none; }
.filters { display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: center; margin-bottom: 8px; }
.filters input, .filters select, .filters button { font: inherit; padding: 4px 6px; }
.count { color: var(--muted); margin: 4px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
thead th { font-size: .85rem; color: var(--muted); white-space: nowrap; }
code { font-size: .85em; }
.badge { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: .85rem; white-space: nowrap;
  background: var(--infobg); color: var(--info); }
.badge.in-step, .badge.confirmed, .badge.succeeded, .badge.up-to-date { background: var(--okbg); color: var(--ok); }
.badge.failed, .badge.rejected, .badge.rolled-back, .badge.unreadable, .badge.unreachable, .badge.drifting { background: var(--badbg); color: var(--bad); }
.badge.applying, .badge.unbaked, .badge.activating, .badge.health, .badge.baking, .badge.behind, .badge.offline, .badge.pending, .badge.not-started, .badge.refused, .badge.partial { background: var(--warnbg); color: var(--warn); }
tr.drifting th, tr.drifting td { background: var(--badbg); }
.drift-mark { font-weight: 700; color: var(--bad); }
.tag { color: var(--muted); }
.muted { color: var(--muted); }
.error { color: var(--bad); white-space: pre-wrap; overflow-wrap: anywhere; max-width: 48ch; }
.bake caption { text-align: left; color: var(--muted); font-size: .85rem; }
.values .fail { color: var(--bad); font-weight: 700; } .values .no-data { color: var(--muted); }
.problem { background: var(--warnbg); color: var(--warn); padding: 6px 10px; border-radius: 4px; }
.poll { margin-top: 20px; color: var(--muted); font-size: .85rem; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; }
.facts dt { color: var(--muted); } .facts dd { margin: 0; overflow-wrap: anywhere; }
pre { overflow-x: auto; background: color-mix(in srgb, var(--line) 35%, transparent); padding: 8px; }
.pager { margin-top: 10px; display: flex; gap: 12px; }
td.differs { color: var(--warn); }
@media (max-width: 640px) {
  body { font-size: 14px; } main { padding: 8px; }
  table.hosts th:nth-child(3), table.hosts td:nth-child(3), table.hosts th:nth-child(6), table.hosts td:nth-child(6) { display: none; }
}
`;
