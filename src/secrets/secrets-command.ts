// A `nixship secrets …` command as the hints print it, with the --fleet the running command
// was given, so that it runs as printed from where this one ran.
import { flagWord } from "../util/shell-quote.js";

export function secretsCommand(args: string, fleetArg?: string): string {
  return `nixship secrets ${args}${flagWord("fleet", fleetArg)}`;
}
