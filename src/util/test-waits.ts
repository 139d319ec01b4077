// Fixed waits of the product that a contributor's tests may shorten through the environment
// (docs/development.md lists them); unset, each keeps the product's own value.
import { InputError } from "../errors.js";

/** The environment variables that shorten a wait, and what each one sets. */
export const TEST_WAITS = {
  NIXSHIP_STATUS_TIMEOUT: "seconds an ssh status query may take (60)",
  NIXSHIP_DOCTOR_HOST_TIMEOUT: "seconds doctor's ssh check of one host may take (20)",
  NIXSHIP_DOCTOR_CACHE_TIMEOUT: "seconds doctor's check of the fleet's cache may take (30)",
  NIXSHIP_PAUSE_POLL_MS: "milliseconds between a paused deployer's reads of its answer (2000)",
  NIXSHIP_REBOOT_PROBE_MS: "milliseconds between two probes of a host rebooting (2000)",
  NIXSHIP_SSM_POLL_MS: "milliseconds between two polls of a running SSM command (2000)",
  NIXSHIP_IMPORT_TIMEOUT:
    "seconds fetch --import gives nix-store --import (twice a read of the closure's NAR bytes)",
} as const;

/**
 * The value of `name` (a positive number, at most `max`) when it is set, else `fallback`;
 * read at each call, so a test that sets it in its own process is heard too.
 */
export function testWait(
  name: keyof typeof TEST_WAITS,
  fallback: number,
  max: number,
  env: NodeJS.ProcessEnv = process.env,
): number {
  const text = env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new InputError(
      "bad-test-wait",
      `$${name} is ${JSON.stringify(text.slice(0, 40))}: it must be a number above 0 and at most ${max} (${TEST_WAITS[name]})`,
      { hint: `unset ${name} to keep the default` },
    );
  }
  return value;
}
