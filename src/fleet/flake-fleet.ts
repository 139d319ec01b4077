// A fleet written in a flake (an output such as `nixship`): the one Nix expression that turns it
// into the value a fleet file parses to, and how its problems and Nix's errors are named, by
// the attribute (`nixship.hosts.web1.tags`). Pure: load-flake-fleet.ts runs the evaluation.
import { nixMarkFunction } from "../nix/eval-trace.js";
import { nixString } from "../nix/nix-string.js";
import type { Problem } from "./json-check.js";
import type { JsonPath } from "./json-path.js";
import { JSON_DEPTH_LIMIT } from "./json-text.js";

/** How deep the fleet's attribute sets and lists may nest: as a fleet file's JSON may. */
export const FLEET_NIX_DEPTH = JSON_DEPTH_LIMIT - 2;

/** What the expression needs to know of the flake, and how hosts' systems are to be named. */
export interface FlakeFleetSource {
  /** The flake reference Nix fetches (`git+file:///…`, `path:/…`, `github:o/r`). */
  readonly flake: string;
  /** The fleet's attribute (["nixship"]). */
  readonly attrPath: readonly string[];
  /**
   * How a host's system that is a Nix value (a configuration, a derivation) is named for the
   * build: this, then `.hosts.NAME.system` (`.#nixship`, relative to `baseDir`).
   */
  readonly installable: string;
  /** The flake's local directory, where Nix paths in its copy are mapped back; null: remote. */
  readonly localDir: string | null;
  /** The flake's directory inside its source tree (`?dir=`), "" at the top. */
  readonly subdir: string;
}

/** The marks' name: a failed evaluation's deepest mark is the fleet's attribute that failed. */
export const FLEET_MARK = "nixship-fleet-attribute";

/** `mark PATH VALUE` (nix/eval-trace.ts), for the fleet's attributes and init's readers. */
export const NIX_MARK_FUNCTION = nixMarkFunction(FLEET_MARK);

/** A Nix list of the Nix values given. */
const nixList = (items: readonly string[]) => `[ ${items.join(" ")} ]`;
/** An attribute name as a Nix string, a list index as a Nix integer. */
const nixKey = (k: string | number) => (typeof k === "number" ? String(k) : nixString(k));

/**
 * The bindings both expressions open with: `flake`; `at`, a value's attribute path (`step` by
 * `step`: an attribute by name, a list's element by index; null past what is there); `value`,
 * the fleet's attribute; and `file`, a file of the flake's copy in the store as the file of its
 * local directory, which a person edits.
 */
function flakeBindings(source: FlakeFleetSource): string {
  return `  flake = builtins.getFlake ${nixString(source.flake)};
  step = s: k:
    if s == null then null
    else if builtins.isInt k then (if builtins.isList s && k < builtins.length s then builtins.elemAt s k else null)
    else if builtins.isAttrs s && builtins.hasAttr k s then builtins.getAttr k s
    else null;
  at = set: path: builtins.foldl' step set path;
  value = at flake ${nixList(source.attrPath.map(nixKey))};
  localDir = ${source.localDir === null ? "null" : nixString(source.localDir)};
  # The flake's own directory in its copy: under its source's root (outPath is that root for
  # Nix 2.8, the flake's directory for 2.26; sourceInfo.outPath is the root for both).
  inFlake = "\${flake.sourceInfo.outPath}${source.subdir === "" ? "" : `/${source.subdir}`}/";
  cut = prefix: s: builtins.substring (builtins.stringLength prefix) (builtins.stringLength s) s;
  file = p: let s = toString p; in
    if localDir != null && builtins.substring 0 (builtins.stringLength inFlake) s == inFlake
    then "\${localDir}/\${cut inFlake s}" else s;`;
}

/**
 * One `nix eval --json` of the fleet: `{ fleet = …; }`, or `{ missing = [outputs]; }` when the
 * flake has no such output. The fleet as JSON: attributes whose value is null are left out (a
 * module's unset option), a derivation is its store path, a Nix path is its file (in the local
 * directory when it lies in the flake), and a host's `system` that is a configuration or a
 * derivation becomes the flake attribute that holds it, which the build evaluates with the
 * other systems. Each value is evaluated under a mark naming its attribute, so that a Nix
 * error in it (a throw, a type error) names where it happened (--show-trace prints the marks).
 */
export function fleetExpression(source: FlakeFleetSource): string {
  return `let
${flakeBindings(source)}
  mark = ${NIX_MARK_FUNCTION};
  isSystem = path: v: builtins.length path == 3 && builtins.head path == "hosts"
    && builtins.elemAt path 2 == "system" && builtins.isAttrs v;
  walk = depth: path: v: mark path (
    if depth > ${FLEET_NIX_DEPTH} then throw "nests deeper than ${FLEET_NIX_DEPTH} levels (does it hold a recursive set, such as pkgs?)"
    else if isSystem path v then "${source.installable.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("$", "\\$")}.hosts.\${builtins.elemAt path 1}.system"
    else if builtins.isAttrs v then
      if (v.type or null) == "derivation" then v.outPath
      else let
        set = builtins.filter (n: mark (path ++ [ n ]) (builtins.getAttr n v) != null) (builtins.attrNames v);
      in builtins.listToAttrs (map (n: { name = n; value = walk (depth + 1) (path ++ [ n ]) (builtins.getAttr n v); }) set)
    else if builtins.isList v then
      builtins.genList (i: walk (depth + 1) (path ++ [ i ]) (builtins.elemAt v i)) (builtins.length v)
    else if builtins.isPath v then file v
    else if builtins.isFunction v then throw "is a function, which a fleet cannot hold (is an argument missing?)"
    else v);
in
  # The flake (and its inputs) fetched first, outside the marks: a failure there is no fleet's.
  builtins.seq flake.outputs (if mark [ ] value == null then { missing = builtins.attrNames (flake.outputs or { }); }
  else { fleet = walk 0 [ ] value; })`;
}

/**
 * One `nix eval --json` of where each of `paths` (attribute paths into the fleet's value) is
 * defined: a list, in order, of "FILE:LINE" (the local file where it lies in the flake) or null
 * where Nix does not know (an element of a list, an attribute made by `listToAttrs`, a path the
 * fleet does not have). Asked only for a fleet that has problems, so that each names the file
 * to edit (a nixship.nix the flake imports, not its flake.nix).
 */
export function fleetPositionsExpression(
  source: FlakeFleetSource,
  paths: readonly JsonPath[],
): string {
  return `let
${flakeBindings(source)}
  where = path: let
    n = builtins.length path;
    parent = at value (builtins.genList (i: builtins.elemAt path i) (n - 1));
    last = builtins.elemAt path (n - 1);
    pos = if n > 0 && builtins.isString last && builtins.isAttrs parent
      then builtins.unsafeGetAttrPos last parent else null;
  in if pos == null then null else "\${file pos.file}:\${toString pos.line}";
in map where ${nixList(paths.map((p) => nixList(p.map(nixKey))))}`;
}

const NIX_NAME = /^[A-Za-z_][A-Za-z0-9_'-]*$/;

/** An attribute path as Nix writes it: `nixship.hosts.web1.tags`, `policies."@web"`, `[0]`. */
export function formatNixAttrPath(path: JsonPath): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else {
      const name = NIX_NAME.test(segment) ? segment : JSON.stringify(segment);
      out += out === "" ? name : `.${name}`;
    }
  }
  return out === "" ? "(the fleet)" : out;
}

/**
 * A fleet-file problem in Nix's words: lists and attribute sets, at the flake's attribute, and
 * where that attribute is defined ("FILE:LINE"), when known.
 */
export function nixProblem(
  attrPath: readonly string[],
  problem: Problem,
  definedAt?: string,
): string {
  const message = problem.message
    .replace(/\ban object\b/g, "an attribute set")
    .replace(/\ban array\b/g, "a list");
  const at = definedAt === undefined ? "" : ` (${definedAt})`;
  return `${formatNixAttrPath([...attrPath, ...problem.path])}${at}: ${message}`;
}
