// A command's calls, logged: a wrapper named like the command, first on PATH, that writes each
// call's arguments as a line and then runs the real command with them.
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shellQuote } from "../../src/util/shell-quote.js";

export interface CommandLog {
  /** PATH with the wrapper's directory first. */
  readonly path: string;
  /** Each call so far, its arguments joined by spaces. */
  calls(): Promise<string[]>;
  /** Removes the wrapper and its log. */
  remove(): Promise<void>;
}

/** Wraps `command` (found on the current PATH) to log its calls. */
export async function logCommandCalls(command: string): Promise<CommandLog> {
  const dir = await mkdtemp(join(tmpdir(), `nixship-${command}-calls-`));
  const log = join(dir, "calls");
  const real = execFileSync("sh", ["-c", `command -v ${shellQuote(command)}`], {
    encoding: "utf8",
  }).trim();
  await writeFile(
    join(dir, command),
    `#!/bin/sh\nprintf '%s\\n' "$*" >>${shellQuote(log)}\nexec ${shellQuote(real)} "$@"\n`,
    { mode: 0o755 },
  );
  return {
    path: `${dir}:${process.env.PATH ?? ""}`,
    calls: async () =>
      (await readFile(log, "utf8").catch(() => "")).split("\n").filter((l) => l !== ""),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
