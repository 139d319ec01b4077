// Health checks a system declares itself: `nixship/health.json` in its store path, in the
// shape of the fleet file's `policy.health`, so that the NixOS configuration carries the checks
// of the services it defines. The deployer reads it from its own store after the build (the
// closure is there: it is what gets pushed), and the host runs these checks after the ones its
// policy names. In a NixOS configuration:
//
//   system.extraSystemBuilderCmds = ''
//     mkdir -p $out/nixship
//     cp ${pkgs.writeText "health.json" (builtins.toJSON {
//       commands = [ { run = "systemctl is-active myapp"; timeout = 20; } ];
//     })} $out/nixship/health.json
//   '';
import { join } from "node:path";
import { InputError } from "../errors.js";
import type { HealthChecks } from "../fleet/fleet.js";
import { fixedHost } from "../fleet/health-url.js";
import { Problems } from "../fleet/json-check.js";
import { formatJsonPath } from "../fleet/json-path.js";
import { parseJsonText } from "../fleet/json-text.js";
import { FLEET_HEALTH, readHealth } from "../fleet/read-policy.js";
import type { StorePath } from "../nix/store-path.js";
import { readFileBounded } from "../util/bounded-file.js";

/** Where in a system its own checks are. */
export const SYSTEM_HEALTH_FILE = "nixship/health.json";
/** Far more than any list of checks. */
export const SYSTEM_HEALTH_LIMIT = 64 * 1024;

/** The checks `system` declares, or undefined when it declares none (the local store). */
export async function readSystemHealth(system: StorePath): Promise<HealthChecks | undefined> {
  const file = join(system, SYSTEM_HEALTH_FILE);
  const bytes = await readFileBounded(file, SYSTEM_HEALTH_LIMIT, (size) =>
    bad(file, `${size} bytes; a system's checks take at most ${SYSTEM_HEALTH_LIMIT}`),
  ).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === "ENOTFILE") throw bad(file, "not a regular file");
    throw err;
  });
  return bytes === undefined ? undefined : parseSystemHealth(bytes, file);
}

/** The checks in `bytes`, the content of `file` (a system's nixship/health.json). */
export function parseSystemHealth(bytes: Buffer, file: string): HealthChecks | undefined {
  if (bytes.length > SYSTEM_HEALTH_LIMIT) {
    throw bad(file, `more than ${SYSTEM_HEALTH_LIMIT} bytes; a system's checks take at most that`);
  }
  const problems = new Problems();
  const health = readHealth(
    parseJsonText(bytes.toString("utf8"), file),
    [],
    problems,
    FLEET_HEALTH,
  );
  const first = problems.list[0];
  if (first !== undefined) {
    const where = first.path.length === 0 ? "" : `${formatJsonPath(first.path)}: `;
    throw bad(file, `${where}${first.message}`);
  }
  // The deployer runs the HTTP checks: a system's own ask its own host, never a place of the
  // system author's choosing in the deployer's network.
  const fixed = health?.http.findIndex((c) => fixedHost(c.url) !== undefined) ?? -1;
  if (health !== undefined && fixed >= 0) {
    throw bad(
      file,
      `http[${fixed}].url: ${health.http[fixed]?.url} names a host of its own; a system's own HTTP checks ask the host they run on: its URL's host must be {address} or {name}`,
    );
  }
  return health;
}

/** The policy's checks, then the system's own. */
export function withSystemHealth(
  policy: HealthChecks,
  system: HealthChecks | undefined,
): HealthChecks {
  if (system === undefined) return policy;
  return {
    http: [...policy.http, ...system.http],
    commands: [...policy.commands, ...system.commands],
  };
}

function bad(file: string, problem: string): InputError {
  return new InputError("bad-system-health", `${file}: ${problem}`, {
    hint: `a system's own checks take the shape of the fleet file's policy.health: {"http": [{"url": …}], "commands": [{"run": …}]}`,
  });
}
