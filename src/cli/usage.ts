// A command's usage line made from the flags it parses, so that the two cannot drift apart,
// and the word wrapping of help text built from lists.
import type { ParseArgsConfig } from "node:util";

type Options = NonNullable<ParseArgsConfig["options"]>;

/** What each string flag takes, as its usage line shows it (`FILE`, `never|auto|always`). */
export type FlagValues<O extends Options> = {
  readonly [K in keyof O as O[K]["type"] extends "string" ? K : never]: string;
};

/** Columns a help line holds at most. */
export const HELP_WIDTH = 96;

/**
 * `Usage: nixship WORDS [--flag VALUE] [--switch]...`, wrapped under the first flag: every
 * flag of `options` in their order, `--json` last; a switch with its `no-` twin is shown
 * once, as `--[no-]NAME`, and a repeatable flag with `...`.
 */
export function usageLine<O extends Options>(
  command: string,
  options: O,
  values: FlagValues<O>,
): string {
  const names = Object.keys(options).filter((n) => n !== "json");
  if ("json" in options) names.push("json");
  const items: string[] = [];
  for (const name of names) {
    const option = options[name] as Options[string];
    if (option.type === "boolean") {
      if (name.startsWith("no-") && options[name.slice(3)]?.type === "boolean") continue;
      const twin = options[`no-${name}`]?.type === "boolean";
      items.push(`[--${twin ? "[no-]" : ""}${name}]`);
    } else {
      const value = (values as Record<string, string>)[name];
      items.push(`[--${name} ${value}]${option.multiple ? "..." : ""}`);
    }
  }
  const head = `Usage: nixship ${command}`;
  return wrapWords(items, head, " ".repeat(head.length + 1));
}

/**
 * `words` after `first`, one space apart, in lines of at most HELP_WIDTH columns (a word longer
 * than that has a line of its own); lines after the first start with `indent`.
 */
export function wrapWords(words: readonly string[], first: string, indent: string): string {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of words) {
    const space = line === "" || line.endsWith(" ") ? "" : " ";
    if (!empty && line.length + space.length + word.length > HELP_WIDTH) {
      lines.push(line);
      line = `${indent}${word}`;
    } else line = `${line}${space}${word}`;
    empty = false;
  }
  lines.push(line);
  return lines.join("\n");
}
