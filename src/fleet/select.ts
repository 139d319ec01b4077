// Host selection (`--on web1,@web,@db-*`): names and @tags, with `*` globs, united in fleet
// order. A term that matches nothing is an error, since a typo must not deploy fewer hosts.
import { InputError } from "../errors.js";
import { closestFirst, listForHint } from "./closest.js";
import type { Fleet, FleetHost } from "./fleet.js";

export interface SelectorTerm {
  /** The term as written, for messages. */
  readonly text: string;
  readonly kind: "name" | "tag";
  /** A name or tag, possibly with `*` wildcards. */
  readonly pattern: string;
}

const TERM_BODY = /^[a-z0-9*-]+$/;
const SELECTOR_HINT =
  "write host names and @tags separated by commas, with * as a wildcard: web1,@db,@eu-*";

export function parseSelector(selector: string): SelectorTerm[] {
  return selector.split(",").map((raw) => {
    const text = raw.trim();
    const kind = text.startsWith("@") ? "tag" : "name";
    const pattern = kind === "tag" ? text.slice(1) : text;
    if (pattern === "") {
      const what = text === "" ? "an empty term" : 'a "@" with no tag';
      throw new InputError("bad-selector", `selector "${selector}" has ${what}`, {
        hint: SELECTOR_HINT,
      });
    }
    if (!TERM_BODY.test(pattern)) {
      throw new InputError(
        "bad-selector",
        `selector term "${text}" has characters other than a-z, 0-9, "-" and "*"`,
        { hint: /[A-Z]/.test(pattern) ? "host names and tags are lowercase" : SELECTOR_HINT },
      );
    }
    return { text, kind, pattern };
  });
}

/** A glob where `*` matches any run of characters (including none), as a whole-string test. */
export function globMatcher(pattern: string): (text: string) => boolean {
  if (!pattern.includes("*")) return (text) => text === pattern;
  const escaped = pattern.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const regex = new RegExp(`^${escaped.join(".*")}$`);
  return (text) => regex.test(text);
}

/** A test of whether a host falls under one term. */
export function termMatcher(
  term: SelectorTerm,
): (host: Pick<FleetHost, "name" | "tags">) => boolean {
  const match = globMatcher(term.pattern);
  return term.kind === "name" ? (host) => match(host.name) : (host) => host.tags.some(match);
}

/** The hosts a selector names, in fleet order; no selector selects every host. */
export function selectHosts(
  fleet: Pick<Fleet, "hosts">,
  selector: string | undefined,
): FleetHost[] {
  if (selector === undefined) return [...fleet.hosts];
  const terms = parseSelector(selector);
  const selected = new Set<FleetHost>();
  for (const term of terms) {
    const matched = fleet.hosts.filter(termMatcher(term));
    if (matched.length === 0) throw noMatch(term, fleet.hosts);
    for (const host of matched) selected.add(host);
  }
  return fleet.hosts.filter((host) => selected.has(host));
}

function noMatch(term: SelectorTerm, hosts: readonly FleetHost[]): InputError {
  const names = hosts.map((h) => h.name);
  const tags = [...new Set(hosts.flatMap((h) => h.tags))];
  const word = term.pattern.replaceAll("*", "");
  const message = `selector term "${term.text}" matches no ${term.kind === "name" ? "host" : "tag"}`;
  // The commonest slip: a tag written without "@", or a host name with one.
  const match = globMatcher(term.pattern);
  let hint: string;
  if (term.kind === "name" && tags.some(match)) {
    hint = `"${term.pattern}" is a tag; write @${term.pattern}`;
  } else if (term.kind === "tag" && names.some(match)) {
    hint = `"${term.pattern}" is a host name; write it without "@"`;
  } else if (term.kind === "name") {
    hint = `known hosts, closest first: ${listForHint(closestFirst(word, names))}`;
  } else {
    hint =
      tags.length === 0
        ? "no host in the fleet has tags"
        : `known tags, closest first: ${listForHint(closestFirst(word, tags))}`;
  }
  return new InputError("bad-selector", message, { hint });
}
