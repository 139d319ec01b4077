// What only a boot loads, and whether a host needs a reboot to load it: the one shape that
// activate.sh's status reports and that an agent's status record carries.
import { storePathOf } from "../nix/store-path.js";
import { isEpochSeconds } from "../util/epoch.js";

/** What only a boot loads, as NixOS's switch-to-configuration compares them. */
export const BOOT_PARTS = ["kernel", "initrd", "kernel-modules"] as const;
export type BootPart = (typeof BOOT_PARTS)[number];

/** Whether the booted system's kernel, initrd or modules differ from the current system's. */
export interface RebootState {
  readonly due: boolean;
  readonly changed: readonly BootPart[];
  /** Since when the current system runs (Unix seconds); null when the host could not tell. */
  readonly since: number | null;
  /** The booted system's kernel, initrd and modules (paths in the store; null where none). */
  readonly booted: Readonly<Record<BootPart, string | null>>;
}

/** The reboot state checked field by field, or what is wrong with it (a host sent it). */
export function readRebootState(value: unknown): RebootState | string {
  const o = objectOf(value);
  if (o === undefined) return "is not an object";
  if (typeof o.due !== "boolean") return "due is not true or false";
  if (!Array.isArray(o.changed) || o.changed.length > BOOT_PARTS.length) {
    return "changed is not a list of boot parts";
  }
  const changed: BootPart[] = [];
  for (const [i, part] of o.changed.entries()) {
    if (!(BOOT_PARTS as readonly unknown[]).includes(part))
      return `changed[${i}] is not a boot part`;
    changed.push(part as BootPart);
  }
  if (!(o.since === null || isEpochSeconds(o.since))) {
    return "since is not a time in seconds or null";
  }
  const b = objectOf(o.booted);
  if (b === undefined) return "booted is not an object";
  const booted = {} as Record<BootPart, string | null>;
  for (const part of BOOT_PARTS) {
    const v = b[part];
    if (v === undefined || v === null) {
      booted[part] = null;
      continue;
    }
    if (
      typeof v !== "string" ||
      v.length > 1024 ||
      storePathOf(v) === undefined ||
      v.includes("/../")
    ) {
      return `booted.${part} is not a path in the store or null`;
    }
    booted[part] = v;
  }
  return { due: o.due, changed, since: o.since as number | null, booted };
}

function objectOf(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}
