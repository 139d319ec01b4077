// What a deploy changes that only a reboot loads: the desired system's kernel, initrd and
// kernel modules (its links, read from the deployer's store, where the system was built)
// against those the host booted (from its status). NixOS's switch-to-configuration compares
// the same three.
import { realpath } from "node:fs/promises";
import { join } from "node:path";
import { BOOT_PARTS, type BootPart } from "../host/activation.js";
import type { StorePath } from "../nix/store-path.js";

/** Where each boot part of `system` points; null where it has none. */
export async function bootParts(system: StorePath): Promise<Record<BootPart, string | null>> {
  const entries = await Promise.all(
    BOOT_PARTS.map(async (part) => [part, await realpath(join(system, part)).catch(() => null)]),
  );
  return Object.fromEntries(entries) as Record<BootPart, string | null>;
}

/** The parts that differ: what a reboot into `desired` would load anew. */
export function rebootChanges(
  desired: Readonly<Record<BootPart, string | null>>,
  booted: Readonly<Record<BootPart, string | null>>,
): BootPart[] {
  return BOOT_PARTS.filter((part) => desired[part] !== booted[part]);
}
