// Text that came from elsewhere (a host, an object store), made safe to show: no control
// characters reach a terminal from it.

/**
 * Control characters but newline and tab, C1 included, and DEL; and the bidirectional
 * embeddings, overrides and isolates, which reorder a run of what a terminal shows ("txt.exe"
 * shown as "exe.txt"). The marks (U+200E, U+200F, U+061C), which right-to-left text holds and
 * which reorder nothing past a neutral character, stay.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are what is removed
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** `text` without control characters (but newline and tab), each shown as U+FFFD. */
export function withoutControls(text: string): string {
  return text.replace(CONTROL, "\ufffd");
}

/**
 * Text someone else chose, shown in a message or kept in a record: without control characters
 * (withoutControls) and at most `max` characters, cut with "…" (the ellipsis counted).
 */
export function clipped(text: string, max: number): string {
  if (text.length <= max) return withoutControls(text);
  return `${withoutControls(text.slice(0, max - 1))}…`;
}

/** A signature's key name (the text before its ':') as a message shows it: clipped to 100. */
export function signatureKeyName(signature: string): string {
  return clipped(signature.slice(0, Math.max(0, signature.indexOf(":"))), 100);
}

/**
 * `text` on one line, for a message that quotes it: control characters shown as U+FFFD (as
 * withoutControls), and each run of line breaks and tabs, with the spaces around it, one space
 * (another's text never starts a line of its own, as if nixship had said it).
 */
export function oneLine(text: string): string {
  return withoutControls(text).replace(/\s*[\n\t]\s*/g, " ");
}

/**
 * A JSON.parse error's message without the input it may quote (Node's "…, \"<input>\" is not
 * valid JSON"), no control character and at most 200 characters: what a record that is not
 * JSON shows of itself.
 */
export function jsonErrorText(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  const text = raw
    .replace(/, (\.\.\.)?".*"(\.\.\.)? is not valid JSON$/s, "")
    .replace(/^(\.\.\.)?".*"(\.\.\.)? is not valid JSON$/s, "unexpected text");
  return withoutControls(text).slice(0, 200);
}

/**
 * A value someone else wrote, quoted for a message: as JSON (so a string shows its quotes and
 * escapes), without control characters, cut at `max` characters.
 */
export function quoted(value: unknown, max = 80): string {
  const text = withoutControls(JSON.stringify(value) ?? String(value));
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

const RAW_CONTROLS = /[\u007f-\u009f]/g;

/**
 * A JSON.stringify replacer that writes a number JSON has no word for as PromQL writes it,
 * "+Inf", "-Inf" or "NaN", where JSON.stringify would write null (which says "no value": a
 * bake's measurement of +Inf must not read as no data).
 */
export function nonFiniteAsText(_key: string, value: unknown): unknown {
  if (typeof value !== "number" || Number.isFinite(value)) return value;
  return Number.isNaN(value) ? "NaN" : value > 0 ? "+Inf" : "-Inf";
}

/**
 * JSON text for stdout, which is often a terminal: DEL and the C1 controls (U+0080-U+009F, of
 * which U+009B starts an escape sequence), which JSON.stringify leaves raw, escaped as
 * `\u00XX`. A parser reads the same value; a terminal gets no control from what a host or a
 * store wrote. An infinity is written as its text (nonFiniteAsText).
 */
export function terminalJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, nonFiniteAsText, indent).replace(
    RAW_CONTROLS,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
