// What is piped to a shell's `sh -s`, made so that every shell reads it at once.
/**
 * `text` for `sh -s`, after one line that has bash read it at once. bash (NixOS's sh) reads a
 * script on a pipe one byte at a time, leaving the rest of its input to the commands it runs:
 * 145,000 reads and about 65 ms of a host's CPU for activate.sh, in each of a deploy's
 * sessions. Under bash, the line reads the rest (its exact length in bytes) with `head`,
 * evaluates it and exits with its status. dash and other shells, which read a pipe in blocks,
 * pass over the line and read on as before.
 */
export function pipedShellInput(text: string): string {
  const bytes = Buffer.byteLength(text);
  return `if [ -n "\${BASH_VERSION-}" ]; then eval "$(head -c ${bytes})"; exit; fi\n${text}`;
}
