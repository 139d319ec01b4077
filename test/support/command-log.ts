// A command's calls, logged: a wrapper named like the command, first on PATH, that writes each
// call's arguments (ended by a NUL: an argument may hold lines) and then runs the real command
// with them.
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shellQuote } from "../../src/util/shell-quote.js";

export interface CommandLog {
  /** PATH with the wrapper's directory first. */
  readonly path: string;
  /** Each call so far, its arguments joined by spaces (one call, whatever lines they hold). */
  calls(): Promise<string[]>;
  /** Removes the wrapper and its log. */
  remove(): Promise<void>;
}

/**
 * Wraps `command` (found on the current PATH) to log its calls; the wrapper's PATH is put before
 * `path` (another log's, to log several commands at once).
 */
export async function logCommandCalls(
  command: string,
  path: string = process.env.PATH ?? "",
): Promise<CommandLog> {
  const dir = await mkdtemp(join(tmpdir(), `nixship-${command}-calls-`));
  const log = join(dir, "calls");
  const real = execFileSync("sh", ["-c", `command -v ${shellQuote(command)}`], {
    encoding: "utf8",
  }).trim();
  await writeFile(
    join(dir, command),
    `#!/bin/sh\nprintf '%s\\000' "$*" >>${shellQuote(log)}\nexec ${shellQuote(real)} "$@"\n`,
    { mode: 0o755 },
  );
  return {
    path: `${dir}:${path}`,
    calls: async () =>
      (await readFile(log, "utf8").catch(() => "")).split("\0").filter((l) => l !== ""),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
