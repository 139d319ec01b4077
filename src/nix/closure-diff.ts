// What changes between two system closures, package by package, as nvd shows it: versions
// changed, packages added and removed, and the closure size, from store path names alone.
// Pure: callers fetch the closures (path and NAR size) and print the strings made here.
import type { PathInfo } from "./closure.js";
import { parseStorePath, type StorePath } from "./store-path.js";

/** One path of a closure: all a diff needs of its metadata. */
export type ClosurePath = Pick<PathInfo, "path" | "narSize">;

/** A store path name split as `builtins.parseDrvName` splits it. */
export interface DrvName {
  readonly name: string;
  /** "" when the name has no version. */
  readonly version: string;
}

/** A store path name as a package: its name, its version, and the output it is, if not `out`. */
export interface PackageName extends DrvName {
  /** `dev`, `bin`, `man`, …: the suffix taken off the version; undefined for the main output. */
  readonly output: string | undefined;
}

/** nvd's marks: [U] a newer version, [D] an older one, [C] neither (e.g. one of two removed). */
export type ChangeKind = "upgrade" | "downgrade" | "change";

/** A package in both closures with a different set of versions. */
export interface VersionChange {
  readonly name: string;
  /** The versions in the current closure, oldest first. */
  readonly before: readonly string[];
  /** The versions in the desired closure, oldest first. */
  readonly after: readonly string[];
  /** Bytes of NAR the package's paths gain (negative when they shrink). */
  readonly sizeDelta: number;
  /** How the newest version moved. */
  readonly kind: ChangeKind;
}

/** A package in one closure only. */
export interface PackagePresence {
  readonly name: string;
  /** Its versions, oldest first; [""] for a path without a version (`etc`). */
  readonly versions: readonly string[];
  /** The NAR bytes of its paths. */
  readonly size: number;
}

/** What changes from the current closure to the desired one. Every list is sorted by name. */
export interface ClosureDiff {
  readonly changed: readonly VersionChange[];
  readonly added: readonly PackagePresence[];
  readonly removed: readonly PackagePresence[];
  /** Packages with the same versions but other store paths (rebuilt); nvd does not list them. */
  readonly rebuilt: number;
  /** NAR bytes of the current closure. */
  readonly sizeBefore: number;
  /** NAR bytes of the desired closure. */
  readonly sizeAfter: number;
}

/** A host's diff, as `groupByChange` takes them. */
export interface HostDiff {
  readonly host: string;
  readonly diff: ClosureDiff;
}

/** Hosts that share one diff, in the order they were first seen. */
export interface HostDiffGroup {
  readonly hosts: readonly string[];
  readonly diff: ClosureDiff;
}

/** A '-' followed by a character that is not a letter: where parseDrvName starts the version. */
const VERSION_START = /-[^a-zA-Z]/;
/** Output names that nixpkgs appends to a path's name; nvd shows them as the one package. */
const OUTPUT_SUFFIX = /-(dev|bin|man|lib|doc|debug|static|info|devdoc)$/;
/** A version's components: runs of digits, or runs of anything but digits, '.' and '-'. */
const VERSION_COMPONENT = /[0-9]+|[^0-9.-]+/g;
/** Nix reads numeric components as a C `int`; longer ones compare as text. */
const MAX_NUMERIC_COMPONENT = 2 ** 31 - 1;

/**
 * Splits a store path name as `builtins.parseDrvName` does: the version starts after the first
 * '-' followed by a non-letter (`gtk+3-3.24.41` → gtk+3, 3.24.41); without one it is "".
 */
export function parseDrvName(storeName: string): DrvName {
  const dash = VERSION_START.exec(storeName);
  if (dash === null) return { name: storeName, version: "" };
  return { name: storeName.slice(0, dash.index), version: storeName.slice(dash.index + 1) };
}

/** parseDrvName, with an output suffix (`openssl-3.0.13-dev`) taken off the version. */
export function parsePackageName(storeName: string): PackageName {
  const { name, version } = parseDrvName(storeName);
  const suffix = OUTPUT_SUFFIX.exec(version);
  if (suffix === null || suffix.index === 0) return { name, version, output: undefined };
  return { name, version: version.slice(0, suffix.index), output: suffix[1] };
}

/**
 * Orders versions as `builtins.compareVersions` does: components split at '.', '-' and between
 * digits and non-digits compare as numbers when both are, and otherwise "pre" < a missing
 * component < other text < a number, so `1.0pre1` < `1.0` < `1.0rc1` < `1.0.1`.
 */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  const as = a.match(VERSION_COMPONENT) ?? [];
  const bs = b.match(VERSION_COMPONENT) ?? [];
  for (let i = 0; i < Math.max(as.length, bs.length); i++) {
    const ca = as[i] ?? "";
    const cb = bs[i] ?? "";
    if (componentLess(ca, cb)) return -1;
    if (componentLess(cb, ca)) return 1;
  }
  return 0;
}

/** `componentsLT` from Nix's names.cc, case by case. */
function componentLess(a: string, b: string): boolean {
  const na = numericComponent(a);
  const nb = numericComponent(b);
  if (na !== undefined && nb !== undefined) return na < nb;
  if (a === "" && nb !== undefined) return true;
  if (a === "pre" && b !== "pre") return true;
  if (b === "pre") return false;
  if (nb !== undefined) return true;
  if (na !== undefined) return false;
  return a < b;
}

function numericComponent(component: string): number | undefined {
  if (!/^[0-9]+$/.test(component)) return undefined;
  const n = Number(component);
  return n <= MAX_NUMERIC_COMPONENT ? n : undefined;
}

/** compareVersions, with equal-comparing versions (`1.01`, `1.1`) kept in a stable order. */
function versionOrder(a: string, b: string): number {
  return compareVersions(a, b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** One package's paths in one closure. */
interface PackagePaths {
  readonly versions: Set<string>;
  readonly paths: StorePath[];
  size: number;
}

/** A closure's paths by package name; a path listed twice counts once. */
function groupByPackage(closure: readonly ClosurePath[]): Map<string, PackagePaths> {
  const packages = new Map<string, PackagePaths>();
  const seen = new Set<StorePath>();
  for (const { path, narSize } of closure) {
    if (seen.has(path)) continue;
    seen.add(path);
    const { name, version } = parsePackageName(parseStorePath(path).name);
    let paths = packages.get(name);
    if (paths === undefined) {
      paths = { versions: new Set(), paths: [], size: 0 };
      packages.set(name, paths);
    }
    paths.versions.add(version);
    paths.paths.push(path);
    paths.size += narSize;
  }
  return packages;
}

function sortedVersions(versions: ReadonlySet<string>): string[] {
  return [...versions].sort(versionOrder);
}

function sameMembers<T>(
  a: readonly T[] | ReadonlySet<T>,
  b: readonly T[] | ReadonlySet<T>,
): boolean {
  const bSet = new Set(b);
  const aList = [...a];
  return aList.length === bSet.size && aList.every((x) => bSet.has(x));
}

/** By the newest versions; a package that gains or loses its only version just changes. */
function changeKind(before: readonly string[], after: readonly string[]): ChangeKind {
  const newestBefore = before.at(-1) ?? "";
  const newestAfter = after.at(-1) ?? "";
  if (newestBefore === "" || newestAfter === "") return "change";
  const order = compareVersions(newestBefore, newestAfter);
  return order < 0 ? "upgrade" : order > 0 ? "downgrade" : "change";
}

function presence(name: string, paths: PackagePaths): PackagePresence {
  return { name, versions: sortedVersions(paths.versions), size: paths.size };
}

function byName(a: { readonly name: string }, b: { readonly name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function totalSize(packages: ReadonlyMap<string, PackagePaths>): number {
  let size = 0;
  for (const paths of packages.values()) size += paths.size;
  return size;
}

/**
 * What changes from the `current` closure to the `desired` one, package by package. Linear in
 * the number of paths (but for sorting), so whole system closures are fine.
 */
export function diffClosures(
  current: readonly ClosurePath[],
  desired: readonly ClosurePath[],
): ClosureDiff {
  const before = groupByPackage(current);
  const after = groupByPackage(desired);
  const changed: VersionChange[] = [];
  const added: PackagePresence[] = [];
  const removed: PackagePresence[] = [];
  let rebuilt = 0;
  for (const [name, was] of before) {
    const is = after.get(name);
    if (is === undefined) {
      removed.push(presence(name, was));
    } else if (!sameMembers(was.versions, is.versions)) {
      const versionsBefore = sortedVersions(was.versions);
      const versionsAfter = sortedVersions(is.versions);
      changed.push({
        name,
        before: versionsBefore,
        after: versionsAfter,
        sizeDelta: is.size - was.size,
        kind: changeKind(versionsBefore, versionsAfter),
      });
    } else if (!sameMembers(was.paths, is.paths)) {
      rebuilt++;
    }
  }
  for (const [name, is] of after) if (!before.has(name)) added.push(presence(name, is));
  return {
    changed: changed.sort(byName),
    added: added.sort(byName),
    removed: removed.sort(byName),
    rebuilt,
    sizeBefore: totalSize(before),
    sizeAfter: totalSize(after),
  };
}

const KIND_MARK: Readonly<Record<ChangeKind, string>> = {
  upgrade: "U",
  downgrade: "D",
  change: "C",
};
const SIZE_UNITS = ["KiB", "MiB", "GiB", "TiB"];

/** Bytes in binary units, as nvd shows disk usage: `512 B`, `1.2 MiB`. */
function formatSize(bytes: number): string {
  if (Math.abs(bytes) < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < SIZE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${SIZE_UNITS[unit]}`;
}

/** A size change with its sign: `+1.2 MiB`, `-512 B`, `±0 B`. */
function formatSizeDelta(bytes: number): string {
  if (bytes === 0) return "±0 B";
  return bytes > 0 ? `+${formatSize(bytes)}` : `-${formatSize(-bytes)}`;
}

/** Versions for people: no version shows as `<none>`, as nvd shows it. */
function formatVersions(versions: readonly string[], separator: string): string {
  return versions.map((v) => (v === "" ? "<none>" : v)).join(separator);
}

/** `openssl 3.0.13 → 3.0.14`. */
function formatChange(change: VersionChange, separator: string): string {
  const before = formatVersions(change.before, separator);
  return `${change.name} ${before} → ${formatVersions(change.after, separator)}`;
}

/** `foo 1.0`, or just `etc` for a package without a version. */
function formatPresence(p: PackagePresence): string {
  const unversioned = p.versions.length === 1 && p.versions[0] === "";
  return unversioned ? p.name : `${p.name} ${formatVersions(p.versions, ", ")}`;
}

function isEmpty(diff: ClosureDiff): boolean {
  return diff.changed.length + diff.added.length + diff.removed.length + diff.rebuilt === 0;
}

/**
 * One line: `3 changed (openssl 3.0.13 → 3.0.14, …), 1 added, 2 removed, +1.2 MiB`, naming at
 * most `maxNames` changed packages; counts that are 0 are left out, and an unchanged closure
 * is `no changes`. A package's several versions are joined by '/' (no store name holds one).
 */
export function formatClosureDiffSummary(diff: ClosureDiff, maxNames = 3): string {
  if (isEmpty(diff) && diff.sizeBefore === diff.sizeAfter) return "no changes";
  const parts: string[] = [];
  if (diff.changed.length > 0) {
    const named = diff.changed.slice(0, Math.max(0, maxNames)).map((c) => formatChange(c, "/"));
    if (named.length < diff.changed.length && named.length > 0) named.push("…");
    const list = named.length > 0 ? ` (${named.join(", ")})` : "";
    parts.push(`${diff.changed.length} changed${list}`);
  }
  if (diff.added.length > 0) parts.push(`${diff.added.length} added`);
  if (diff.removed.length > 0) parts.push(`${diff.removed.length} removed`);
  if (parts.length === 0) parts.push("no version changes");
  if (diff.rebuilt > 0) parts.push(`${diff.rebuilt} rebuilt`);
  parts.push(formatSizeDelta(diff.sizeAfter - diff.sizeBefore));
  return parts.join(", ");
}

/**
 * The diff as nvd prints it, one package a line: `[U] openssl 3.0.13 → 3.0.14` ([D] for an
 * older version, [C] otherwise), `[A] foo 1.0`, `[R] bar 2.1`, then the rebuilt count and
 * `Closure size: 1.0 GiB → 1.0 GiB (+1.2 MiB)`.
 */
export function formatClosureDiff(diff: ClosureDiff): string {
  const lines = [
    ...diff.changed.map((c) => `[${KIND_MARK[c.kind]}] ${formatChange(c, ", ")}`),
    ...diff.added.map((p) => `[A] ${formatPresence(p)}`),
    ...diff.removed.map((p) => `[R] ${formatPresence(p)}`),
  ];
  if (lines.length === 0) lines.push("No version changes.");
  if (diff.rebuilt > 0) {
    const packages = diff.rebuilt === 1 ? "1 package" : `${diff.rebuilt} packages`;
    lines.push(`${packages} rebuilt with the same version`);
  }
  const sizes = `${formatSize(diff.sizeBefore)} → ${formatSize(diff.sizeAfter)}`;
  lines.push(`Closure size: ${sizes} (${formatSizeDelta(diff.sizeAfter - diff.sizeBefore)})`);
  return lines.join("\n");
}

/** A diff as text that is equal for equal diffs (lists in `diffClosures`' order). */
function diffKey(diff: ClosureDiff): string {
  return JSON.stringify([
    diff.changed.map((c) => [c.name, c.before, c.after, c.sizeDelta]),
    diff.added.map((p) => [p.name, p.versions, p.size]),
    diff.removed.map((p) => [p.name, p.versions, p.size]),
    diff.rebuilt,
    diff.sizeBefore,
    diff.sizeAfter,
  ]);
}

/** Hosts with identical diffs together, groups in first-seen order: 200 alike print one diff. */
export function groupByChange(hosts: readonly HostDiff[]): HostDiffGroup[] {
  const groups = new Map<string, { hosts: string[]; diff: ClosureDiff }>();
  for (const { host, diff } of hosts) {
    const key = diffKey(diff);
    const group = groups.get(key);
    if (group === undefined) groups.set(key, { hosts: [host], diff });
    else group.hosts.push(host);
  }
  return [...groups.values()];
}
