// Text that came from elsewhere (a host, an object store), made safe to show: no control
// characters reach a terminal from it.

/** Control characters but newline and tab, C1 included, and DEL. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are what is removed
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** `text` without control characters (but newline and tab), each shown as U+FFFD. */
export function withoutControls(text: string): string {
  return text.replace(CONTROL, "\ufffd");
}

/**
 * A store's `url` without the user and password it may carry (`s3://u:p@ss@host/…`: up to the
 * authority's last `@`), its query kept (a store's settings). A flake's reference is shown by
 * sourceReference (source-reference.ts), which keeps only what identifies it.
 */
export function withoutCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, "$1");
}
