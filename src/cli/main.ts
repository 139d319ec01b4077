// The nixship command line: picks the command from the leading words, runs it, and renders
// any fault once, here, with its hint and exit code.

import { NixshipError, UsageError } from "../errors.js";
import { likelyTypo } from "../fleet/closest.js";
import { runCommandEnd } from "../util/command-end.js";
import { terminalJson, withoutControls } from "../util/text.js";
import { type CliIO, parseFlags, refuseArguments } from "./command.js";
import { COMMANDS, type CommandEntry, loadCommand, loadCommands } from "./commands.js";
import { INTERRUPTED_EXIT, interruptedUntrapped } from "./interrupts.js";
import { systemFault } from "./system-faults.js";

const VERSION = "0.1.0";

export async function usage(): Promise<string> {
  const commands = await loadCommands();
  const width = Math.max(...commands.map((c) => c.path.join(" ").length));
  const lines = commands.map((c) => `  ${c.path.join(" ").padEnd(width)}  ${c.summary}`);
  return `nixship ${VERSION}: build NixOS systems once, push them signed into a Nix binary cache,
and roll them out to a fleet.

Usage: nixship COMMAND [ARGS...]     ('nixship COMMAND --help' or 'nixship help COMMAND'
                                      for details; 'nixship version' for the version)

Commands:
${lines.join("\n")}

Exit codes: 0 success, 1 the operation failed, 2 bad usage or input, 130 interrupted
(deploy: SIGINT, SIGTERM, SIGHUP, or its output closed).
`;
}

function findCommand(
  argv: readonly string[],
): { command: CommandEntry; rest: readonly string[] } | undefined {
  return COMMANDS.map((command) => ({ command, rest: argv.slice(command.path.length) }))
    .filter(({ command }) => command.path.every((word, i) => argv[i] === word))
    .sort((a, b) => b.command.path.length - a.command.path.length)[0];
}

/** The words that start a group of subcommands (lab, release, key, …). */
function groupOf(word: string | undefined): readonly CommandEntry[] {
  return word === undefined ? [] : COMMANDS.filter((c) => c.path.length > 1 && c.path[0] === word);
}

/** A group's help: its subcommands, one line each. */
export async function groupHelp(word: string): Promise<string> {
  const group = await loadCommands(groupOf(word));
  const width = Math.max(...group.map((c) => c.path.slice(1).join(" ").length));
  const lines = group.map((c) => `  ${c.path.slice(1).join(" ").padEnd(width)}  ${c.summary}`);
  return `Usage: nixship ${word} SUBCOMMAND [ARGS...]     ('nixship ${word} SUBCOMMAND --help' for details)

Subcommands:
${lines.join("\n")}`;
}

/** The help `words` ask for (`deploy`, `lab up`, `lab`), or undefined when they name nothing. */
async function helpFor(words: readonly string[]): Promise<string | undefined> {
  const found = findCommand(words);
  if (found?.rest.every((w) => w.startsWith("-"))) return (await loadCommand(found.command)).help;
  if (words.length === 1 && groupOf(words[0]).length > 0) return groupHelp(words[0] as string);
  return undefined;
}

function unknownCommand(argv: readonly string[]): UsageError {
  const group = groupOf(argv[0]);
  // The words that name a command: not the options after them (`bogus --help`).
  const words = argv.slice(0, 2).filter((w, i) => i === 0 || !w.startsWith("-"));
  if (group.length > 0) {
    const subcommands = group.map((c) => c.path.slice(1).join(" "));
    const given = words[1];
    const typo = given === undefined ? undefined : likelyTypo(given, subcommands);
    const hint = `${typo === undefined ? "" : `did you mean 'nixship ${argv[0]} ${typo}'? `}'${argv[0]}' takes one of: ${subcommands.join(", ")}; see 'nixship ${argv[0]} --help'`;
    return given === undefined
      ? new UsageError(`'nixship ${argv[0]}' needs a subcommand`, hint)
      : new UsageError(`unknown command '${words.join(" ")}'`, hint);
  }
  const first = argv[0] ?? "";
  // An option before the command (`nixship --json deploy`): options follow the command.
  if (first.startsWith("-")) {
    return new UsageError(
      `'${first}' comes before a command: options follow the command`,
      "e.g. 'nixship deploy --json'; run 'nixship --help' for the list of commands",
    );
  }
  const typo = likelyTypo(first, new Set(COMMANDS.map((c) => c.path[0] as string)));
  return new UsageError(
    `unknown command '${words.join(" ")}'`,
    typo === undefined
      ? "run 'nixship --help' for the list of commands"
      : `did you mean 'nixship ${typo}'? ('nixship --help' lists the commands)`,
  );
}

/**
 * Whether the command's stdout is JSON for a program that reads it whole (`terraform vars`, for
 * Terraform's external data source), whose errors go to stderr alone, --json or not.
 */
function writesItsOwnJson(argv: readonly string[]): boolean {
  return argv[0] === "terraform" && argv[1] === "vars";
}

/** Whether an error of the command `argv` is also written to stdout as JSON ({"error": …}). */
function errorsAsJson(argv: readonly string[]): boolean {
  return argv.includes("--json") && !writesItsOwnJson(argv);
}

export async function main(argv: readonly string[], io: CliIO): Promise<number> {
  try {
    const code = await dispatch(argv, io);
    return interruptedUntrapped() ? INTERRUPTED_EXIT : code;
  } catch (err) {
    // Interrupted: early-interrupts.ts said so; what the command then met (its Nix stopped) is
    // no error of its own.
    if (interruptedUntrapped()) return INTERRUPTED_EXIT;
    return reportError(err, io, errorsAsJson(argv));
  } finally {
    // The command is over: what it left running (ssh masters) is stopped, within a bound.
    await runCommandEnd();
  }
}

async function dispatch(argv: readonly string[], io: CliIO): Promise<number> {
  const first = argv[0];
  if (first === undefined) {
    // The list on stdout, as --help gives it; the fault on stderr, as every usage error's.
    io.stdout.write(await usage());
    throw new UsageError("name a command", "the commands are listed above; run 'nixship --help'");
  }
  if (first === "--help" || first === "-h" || first === "help") {
    // `help help`, `help --help`: help's own help is the list of commands.
    const asked = argv.slice(1).filter((w, i) => i > 0 || !["help", "--help", "-h"].includes(w));
    if (asked.length === 0) {
      io.stdout.write(await usage());
      return 0;
    }
    const help = await helpFor(asked);
    if (help === undefined) throw unknownCommand(asked);
    io.stdout.write(`${help}\n`);
    return 0;
  }
  if (first === "--version" || first === "version") {
    if (argv.slice(1).some((w) => w === "--help" || w === "-h")) {
      io.stdout.write(`${VERSION_HELP}\n`);
      return 0;
    }
    const { values, positionals } = parseFlags(argv.slice(1), VERSION_FLAGS, "version");
    try {
      refuseArguments(positionals, "version");
    } catch (err) {
      throw withHelpHint(err, "version");
    }
    io.stdout.write(values.json ? `${JSON.stringify({ version: VERSION })}\n` : `${VERSION}\n`);
    return 0;
  }
  const found = findCommand(argv);
  // Only the words before `--`: what follows it is another program's (`lab exec HOST -- CMD -h`).
  const wantsHelp = (words: readonly string[]) => {
    const own = words.includes("--") ? words.slice(0, words.indexOf("--")) : words;
    return own.includes("--help") || own.includes("-h");
  };
  if (!found) {
    if (groupOf(first).length > 0 && wantsHelp(argv.slice(1, 2))) {
      io.stdout.write(`${await groupHelp(first)}\n`);
      return 0;
    }
    throw unknownCommand(argv);
  }
  const command = await loadCommand(found.command);
  if (wantsHelp(found.rest)) {
    io.stdout.write(`${command.help}\n`);
    return 0;
  }
  try {
    return await command.run(found.rest, io);
  } catch (err) {
    throw withHelpHint(err, found.command.path.join(" "));
  }
}

/** What `version` takes. */
const VERSION_FLAGS = { json: { type: "boolean" } } as const;
const VERSION_HELP = `Usage: nixship version [--json]

Prints nixship's version ('nixship --version' too); --json: {"version": "…"}.`;

/** A usage error that names no fix gets the command's help as one. */
function withHelpHint(err: unknown, command: string): unknown {
  if (!(err instanceof UsageError) || err.hint !== undefined) return err;
  return new UsageError(err.message, `see 'nixship ${command} --help'`);
}

/**
 * The command `argv` was left waiting on work that can no longer end (the event loop emptied
 * before it did): reported as the bug it is, as JSON too under --json; returns the exit code.
 */
export function reportLeftWaiting(argv: readonly string[], io: CliIO): number {
  return reportError(
    new Error(
      "the command stopped before it finished: it was left waiting on work that can no longer end",
    ),
    io,
    errorsAsJson(argv),
  );
}

function reportError(thrown: unknown, io: CliIO, json: boolean): number {
  const err = systemFault(thrown) ?? thrown;
  const known = err instanceof NixshipError;
  const code = known ? err.code : "internal";
  // Messages quote what hosts and stores said: whatever a reader missed, no control character
  // reaches the terminal or the JSON.
  const message = withoutControls(err instanceof Error ? err.message : String(err));
  const hint = known
    ? err.hint && withoutControls(err.hint)
    : "this is a bug in nixship; please report it with the command you ran";
  if (json)
    io.stdout.write(`${terminalJson({ error: { code, message, ...(hint ? { hint } : {}) } })}\n`);
  io.stderr.write(`error: ${message}\n${hint ? `hint: ${hint}\n` : ""}`);
  if (!known && err instanceof Error && process.env.NIXSHIP_DEBUG)
    io.stderr.write(`${err.stack}\n`);
  return known ? err.exitCode : 1;
}
