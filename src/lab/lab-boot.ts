// The lab's stand-in for a host's boot loader: systemd-boot as NixOS installs it, with or
// without boot counting (the Boot Loader Specification's "Boot counting", and systemd's
// "Automatic Boot Assessment"). It works on the host's own files from the machine's side: its
// system profile (HOST/nix/var/nix/profiles/system-N-link) and its ESP (HOST/boot, which the
// host sees at /boot).
//
// What it does as the real one does:
// - one entry per generation of the system profile, loader/entries/nixos-generation-N.conf;
//   with counting, a new entry is named nixos-generation-N+T.conf (T tries left);
// - the default entry is the profile's current generation;
// - booting a counted entry first renames it: +LEFT-DONE becomes +(LEFT-1)-(DONE+1), and the
//   booted entry's name is passed to the OS (the EFI variable LoaderBootCountPath, here the file
//   /run/nixship-lab/efivars/LoaderBootCountPath in the host);
// - an entry with no tries left (+0...) is bad: it sorts after every other entry, so the newest
//   entry that is not bad boots instead (falling back to the previous generation);
// - `systemd-bless-boot good` (in the host) drops the counter: the entry is good for good.
// Where it differs (docs/development.md names this list):
// - entries are installed when the host boots, not when switch-to-configuration runs (the same
//   entries result, since NixOS installs one per generation of the profile either way);
// - counting is set per lab host (`lab up --boot-counting T`), not by the system's
//   configuration (boot.loader.systemd-boot.bootCounting);
// - a system that does not boot makes the host try again at once (as `panic=1` with a
//   watchdog would); without counting, the host halts instead of trying the same entry forever.
import { mkdir, readdir, readFile, readlink, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** The host's ESP directory (on the machine), bound at /boot in the host. */
export function espDir(hostDir: string): string {
  return join(hostDir, "boot");
}

const ENTRIES = join("loader", "entries");
/** Where the ESP says how many tries a new entry gets (absent: no counting). */
const COUNTING_FILE = join("loader", "nixship-lab-counting");
const ENTRY_NAME = /^nixos-generation-(\d+)(?:\+(\d+)(?:-(\d+))?)?\.conf$/;

export interface BootEntry {
  readonly generation: number;
  /** The entry's file name in loader/entries. */
  readonly file: string;
  /** The system it boots. */
  readonly system: string;
  /** Counted entries: tries left and done; undefined: not counted (good). */
  readonly triesLeft?: number;
  readonly triesDone?: number;
}

/** Sets how many tries a new entry gets on this host; undefined: no boot counting. */
export async function setBootCounting(hostDir: string, tries: number | undefined): Promise<void> {
  const file = join(espDir(hostDir), COUNTING_FILE);
  if (tries === undefined) {
    await rm(file, { force: true });
    return;
  }
  if (!Number.isInteger(tries) || tries < 1 || tries > 9) {
    throw new RangeError(`boot counting tries must be 1-9, got ${tries}`);
  }
  await mkdir(join(espDir(hostDir), "loader"), { recursive: true });
  await writeFile(file, `${tries}\n`);
}

/** The tries a new entry gets, or undefined without counting. */
export async function bootCounting(hostDir: string): Promise<number | undefined> {
  const text = await readFile(join(espDir(hostDir), COUNTING_FILE), "utf8").catch(() => "");
  const tries = Number(text.trim());
  return text.trim() !== "" && Number.isInteger(tries) && tries > 0 ? tries : undefined;
}

/** Parses an entry's file name; undefined when it is not one of NixOS's entries. */
export function parseEntryName(
  file: string,
): Pick<BootEntry, "generation" | "triesLeft" | "triesDone"> | undefined {
  const m = ENTRY_NAME.exec(file);
  if (!m) return undefined;
  return {
    generation: Number(m[1]),
    ...(m[2] === undefined ? {} : { triesLeft: Number(m[2]), triesDone: Number(m[3] ?? 0) }),
  };
}

export function entryName(entry: Pick<BootEntry, "generation" | "triesLeft" | "triesDone">) {
  if (entry.triesLeft === undefined) return `nixos-generation-${entry.generation}.conf`;
  const done = entry.triesDone ? `-${entry.triesDone}` : "";
  return `nixos-generation-${entry.generation}+${entry.triesLeft}${done}.conf`;
}

/** The profile's generations (number → system) and its current one, read from the host's /nix. */
export async function profileGenerations(
  hostDir: string,
): Promise<{ generations: Map<number, string>; current: number | undefined }> {
  const dir = join(hostDir, "nix", "var", "nix", "profiles");
  const generations = new Map<number, string>();
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = /^system-(\d+)-link$/.exec(name);
    if (!m) continue;
    const target = await readlink(join(dir, name)).catch(() => "");
    if (target.startsWith("/nix/store/")) generations.set(Number(m[1]), target);
  }
  const link = await readlink(join(dir, "system")).catch(() => "");
  const m = /^(?:.*\/)?system-(\d+)-link$/.exec(link);
  const current = m && generations.has(Number(m[1])) ? Number(m[1]) : undefined;
  return { generations, current };
}

/** The ESP's entries, newest generation first. */
export async function readEntries(hostDir: string): Promise<BootEntry[]> {
  const dir = join(espDir(hostDir), ENTRIES);
  const entries: BootEntry[] = [];
  for (const file of await readdir(dir).catch(() => [] as string[])) {
    const parsed = parseEntryName(file);
    if (parsed === undefined) continue;
    const text = await readFile(join(dir, file), "utf8").catch(() => "");
    const system = /^options init=(\S+)\/init$/m.exec(text)?.[1];
    if (system !== undefined) entries.push({ ...parsed, file, system });
  }
  return entries.sort((a, b) => b.generation - a.generation);
}

/**
 * Installs the entries the profile calls for, as NixOS's systemd-boot builder does: one per
 * generation (a new one counted when the host counts boots; an existing one keeps its name and
 * counter), none for a generation that is gone.
 */
export async function installEntries(hostDir: string): Promise<BootEntry[]> {
  const dir = join(espDir(hostDir), ENTRIES);
  await mkdir(dir, { recursive: true });
  const { generations } = await profileGenerations(hostDir);
  const tries = await bootCounting(hostDir);
  const existing = await readEntries(hostDir);
  for (const entry of existing) {
    if (generations.get(entry.generation) !== entry.system) await rm(join(dir, entry.file));
  }
  const kept = new Set(
    existing.filter((e) => generations.get(e.generation) === e.system).map((e) => e.generation),
  );
  for (const [generation, system] of generations) {
    if (kept.has(generation)) continue;
    const file = entryName({ generation, ...(tries === undefined ? {} : { triesLeft: tries }) });
    await writeFile(join(dir, file), entryText(generation, system));
  }
  return readEntries(hostDir);
}

function entryText(generation: number, system: string): string {
  return [
    `title NixOS (generation ${generation})`,
    `version Generation ${generation}`,
    `linux ${system}/kernel`,
    `initrd ${system}/initrd`,
    `options init=${system}/init`,
    "",
  ].join("\n");
}

/** An entry with no tries left is bad. */
export function isBad(entry: BootEntry): boolean {
  return entry.triesLeft === 0;
}

/**
 * The entry the boot loader picks: the default (the profile's current generation) unless it is
 * bad; else the newest entry that is not bad; else (all bad) the default anyway.
 */
export function chooseEntry(
  entries: readonly BootEntry[],
  defaultGeneration: number | undefined,
): BootEntry | undefined {
  const byDefault = entries.find((e) => e.generation === defaultGeneration);
  if (byDefault !== undefined && !isBad(byDefault)) return byDefault;
  const newest = [...entries].sort((a, b) => b.generation - a.generation).find((e) => !isBad(e));
  return newest ?? byDefault ?? entries[0];
}

/** One boot attempt as the loader saw it. */
export interface BootChoice {
  readonly entry: BootEntry;
  /** The entry's name after this boot's count (what LoaderBootCountPath names). */
  readonly bootedFile: string;
  /** Whether the entry counts this boot (it had a counter with tries left). */
  readonly counted: boolean;
}

/**
 * Starts a boot: installs the entries, picks one and counts the try (a rename, before anything
 * of the system runs). undefined: the host has no system profile yet (nothing to boot: it runs
 * what it was installed with).
 */
export async function startBoot(
  hostDir: string,
  /** The generation whose entry someone picked at the boot menu; else the loader chooses. */
  picked?: number,
): Promise<BootChoice | undefined> {
  const entries = await installEntries(hostDir);
  const { current } = await profileGenerations(hostDir);
  const entry =
    (picked === undefined ? undefined : entries.find((e) => e.generation === picked)) ??
    chooseEntry(entries, current);
  if (entry === undefined) return undefined;
  if (entry.triesLeft === undefined || entry.triesLeft === 0) {
    return { entry, bootedFile: entry.file, counted: false };
  }
  const next = entryName({
    generation: entry.generation,
    triesLeft: entry.triesLeft - 1,
    triesDone: (entry.triesDone ?? 0) + 1,
  });
  const dir = join(espDir(hostDir), ENTRIES);
  await rename(join(dir, entry.file), join(dir, next));
  return { entry, bootedFile: next, counted: true };
}
