// Where the deployer reads what a built system says of itself (its own health checks, its boot
// parts): the local store, where a build puts it, or the build host's store when its closure
// was pushed from there and never came here (build-host-files.ts).
import type { HealthChecks } from "../fleet/fleet.js";
import type { BootPart } from "../host/activation.js";
import type { StorePath } from "../nix/store-path.js";
import { bootParts } from "./boot-parts.js";
import { readSystemHealth } from "./system-health.js";

export interface SystemFiles {
  /** The checks the system declares (nixship/health.json), or undefined. */
  health(system: StorePath): Promise<HealthChecks | undefined>;
  /** Where each boot part of the system points; null where it has none. */
  bootParts(system: StorePath): Promise<Record<BootPart, string | null>>;
}

export const localSystemFiles: SystemFiles = { health: readSystemHealth, bootParts };
