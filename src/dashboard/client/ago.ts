// How long ago a time was, as pages say it: one formatting for the server, which renders pages,
// and the browser, which keeps their times current between renders. Pure, no DOM.

/** "12 s ago", "3 min ago", "5 h ago", "2 d ago" (or "in 4 h" for a time ahead of `now`). */
export function ago(iso: string | null | undefined, now: Date): string {
  if (iso === null || iso === undefined) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return "unknown";
  const s = Math.round((now.getTime() - t) / 1000);
  const span = duration(Math.abs(s));
  return s >= 0 ? `${span} ago` : `in ${span}`;
}

export function duration(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86_400 * 2) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86_400)} d`;
}
