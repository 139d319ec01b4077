// The shape of a CLI command, and flag parsing on node:util's parseArgs with usage errors
// that name the flag and point at --help.
import { type ParseArgsConfig, parseArgs } from "node:util";
import { UsageError } from "../errors.js";
import { likelyTypo } from "../fleet/closest.js";
import { terminalJson } from "../util/text.js";

export interface CliIO {
  readonly stdout: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stdin: NodeJS.ReadableStream;
  readonly env: NodeJS.ProcessEnv;
}

export interface Command {
  /** Words that select the command, e.g. `["cache", "serve"]`. */
  readonly path: readonly string[];
  readonly summary: string;
  /** The full --help text. */
  readonly help: string;
  run(argv: readonly string[], io: CliIO): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export function parseFlags<O extends Options>(
  argv: readonly string[],
  options: O,
  command: string,
) {
  // `--parallel -1`: a value that is a negative number is the flag's value (to be refused by
  // its own check, with the flag's rule), not a flag of its own.
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] as string;
    const next = argv[i + 1];
    const name = word.startsWith("--") ? word.slice(2) : undefined;
    if (name && options[name]?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      args.push(`${word}=${next}`);
      i++;
    } else args.push(word);
  }
  const parsed = parseOrExplain(args, options, command);
  refuseRepeated(parsed.tokens, options, command);
  const { tokens: _tokens, ...result } = parsed;
  return result;
}

/** parseArgs, its errors as usage errors that name the flag (and the flag meant, for a typo). */
function parseOrExplain<O extends Options>(args: string[], options: O, command: string) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    const message = (err as Error).message.replace(/\. To specify a positional argument.*$/s, "");
    // An unknown option that is a typo of one the command takes: that one is named.
    const unknown = /^Unknown option '--([^']+)'/.exec(message)?.[1];
    const typo = unknown === undefined ? undefined : likelyTypo(unknown, Object.keys(options));
    throw new UsageError(
      `${command}: ${message}`,
      `${typo === undefined ? "" : `did you mean --${typo}? `}see 'nixship ${command} --help'`,
    );
  }
}

/**
 * A flag that takes one value, given more than once: parseArgs keeps the last and says
 * nothing, so `deploy --on web1 --on web2` would deploy web2 alone. Refused, naming the flag
 * (not its values, which may be paths a user would rather not see echoed). A flag without a
 * value (--json) may be repeated: it means the same each time.
 */
function refuseRepeated(
  tokens: readonly { kind: string; name?: string }[],
  options: Options,
  command: string,
): void {
  const seen = new Map<string, number>();
  for (const token of tokens) {
    if (token.kind !== "option" || token.name === undefined) continue;
    const option = options[token.name];
    if (option === undefined || option.type !== "string" || option.multiple === true) continue;
    seen.set(token.name, (seen.get(token.name) ?? 0) + 1);
  }
  for (const [name, count] of seen) {
    if (count < 2) continue;
    const how =
      name === "on"
        ? "give it once, with every selector joined by commas (--on web1,web2)"
        : "give it once";
    throw new UsageError(
      `${command}: --${name} was given ${count} times; it takes one value`,
      `${how}; see 'nixship ${command} --help'`,
    );
  }
}

export function requireFlag<T>(value: T | undefined, flag: string, command: string): T {
  if (value === undefined) {
    throw new UsageError(`${command}: ${flag} is required`, `see 'nixship ${command} --help'`);
  }
  // Given empty (`--to "$URL"` with URL unset): said as such, not as missing.
  if (value === "") {
    throw new UsageError(`${command}: ${flag} is empty`, `see 'nixship ${command} --help'`);
  }
  return value;
}

export function parseIntFlag(
  value: string | undefined,
  flag: string,
  command: string,
  min = 1,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > max) {
    // Without a maximum of its own, a number of digits past the largest exact one is told it.
    const tooLarge = /^[0-9]+$/.test(value) && Number(value) > max;
    const range =
      max === Number.MAX_SAFE_INTEGER && !tooLarge ? `≥ ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`${command}: ${flag} must be a whole number ${range}, got '${value}'`);
  }
  return Number(value);
}

/**
 * Refuses words a command that takes none was given (`agent pause extra`). A store URL given
 * as a word to a command that takes its store as a flag gets the flag named (`cacheFlag`).
 */
export function refuseArguments(
  positionals: readonly string[],
  command: string,
  cacheFlag?: string,
): void {
  const word = positionals[0];
  if (word === undefined) return;
  const url = cacheFlag !== undefined && /^[a-z][a-z0-9+.-]*:\/\//.test(word);
  throw new UsageError(
    `${command}: unexpected argument '${word}'`,
    url ? `name the cache with ${cacheFlag}` : undefined,
  );
}

export function writeJson(io: CliIO, value: unknown): void {
  io.stdout.write(`${terminalJson(value, 2)}\n`);
}

/** One line of NDJSON on stdout (a stream of events: one object per line). */
export function writeJsonLine(io: CliIO, value: unknown): void {
  io.stdout.write(`${terminalJson(value)}\n`);
}
