// Small formatting for pages: times as "how long ago", durations, counts. Pure.
import { ago } from "./client/ago.js";
import { type Html, html } from "./html.js";

export { ago, duration } from "./client/ago.js";

/**
 * A time as how long ago it was, which the page's script keeps current between renders
 * (`data-ago`): a rollout stuck for a minute never reads "0 s ago".
 */
export function agoTime(iso: string | null | undefined, now: Date): Html {
  return html`<time datetime="${iso ?? ""}" data-ago>${ago(iso, now)}</time>`;
}
