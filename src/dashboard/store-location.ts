// The store's location never reaches a client of the dashboard: its URL, the directory it names,
// or its bucket, prefix, profile and endpoint are the operator's to know (the server's log has
// the store's own words). Poll errors, unreadable records and messages built from the store's
// URL name it; every answer's text is passed through hideStoreLocation before it leaves
// (server.ts), so no page, API answer or error can carry it. Pure.
import { fileURLToPath } from "node:url";
import { parseStoreUrl } from "../store/url.js";

/** What a client reads where the store's location was. */
export const STORE_SAID = "the store";

/**
 * Every text that names the store at `url` (as given, and as the store reports itself), longest
 * first: the URL, without its query, and what it names (a directory; a bucket and its prefix).
 */
export function storeLocations(url: string): readonly string[] {
  const forms = new Set<string>([url, url.split("?")[0] ?? url]);
  try {
    const parsed = parseStoreUrl(url);
    if (parsed.kind === "file") {
      forms.add(parsed.root);
      forms.add(`file://${parsed.root}`);
    } else {
      const where = parsed.prefix === "" ? parsed.bucket : `${parsed.bucket}/${parsed.prefix}`;
      forms.add(`s3://${where}`);
      forms.add(`s3://${parsed.bucket}`);
      forms.add(where);
      if (parsed.endpoint !== undefined) forms.add(parsed.endpoint);
    }
  } catch {
    // A URL the parser refuses is hidden as given.
  }
  if (url.startsWith("file://")) {
    try {
      forms.add(fileURLToPath(url.split("?")[0] ?? url));
    } catch {
      // Not a path: hidden as given.
    }
  }
  // Each as an HTML page or JSON may write it too.
  for (const form of [...forms]) {
    forms.add(escapeHtml(form));
    forms.add(form.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`));
    forms.add(JSON.stringify(form).slice(1, -1));
  }
  return [...forms].filter((f) => f.length > 0).sort((a, b) => b.length - a.length);
}

/** `text` with each of `locations` said as "the store". */
export function hideStoreLocation(text: string, locations: readonly string[]): string {
  let out = text;
  for (const location of locations) {
    if (out.includes(location)) out = out.replaceAll(location, STORE_SAID);
  }
  return out;
}

function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}
