// A built system's own files read in the build host's store over ssh, for a deploy whose
// closure was pushed from there and is not in the deployer's store: its health checks
// (bounded, parsed as the local ones) and its boot parts (resolved there, as the host will).
import { runOverSsh, type SshTarget } from "../delivery/ssh-transport.js";
import { OperationError } from "../errors.js";
import { BOOT_PARTS, type BootPart } from "../host/activation.js";
import type { StorePath } from "../nix/store-path.js";
import { shellQuote } from "../util/shell-quote.js";
import { withoutControls } from "../util/text.js";
import type { SystemFiles } from "./system-files.js";
import { parseSystemHealth, SYSTEM_HEALTH_FILE, SYSTEM_HEALTH_LIMIT } from "./system-health.js";

/** Seconds one read may take, the connection included. */
const READ_DEADLINE_S = 60;

export function buildHostSystemFiles(target: SshTarget): SystemFiles {
  const read = async (system: StorePath, command: string, what: string) => {
    const r = await runOverSsh(target, command, {
      fresh: true,
      signal: AbortSignal.timeout(READ_DEADLINE_S * 1000),
      stdoutKept: SYSTEM_HEALTH_LIMIT + 4096,
    });
    if (r.code !== 0) {
      throw new OperationError(
        "build-host-read",
        `cannot read ${what} of ${system} on ${target.name}: ${withoutControls(r.stderr.trim().split("\n").slice(-3).join(" ")).slice(-600) || `exit ${r.code}`}`,
        { hint: `check that ${target.name} is up and still holds the system it built` },
      );
    }
    return r.stdout;
  };
  return {
    async health(system) {
      const file = `${system}/${SYSTEM_HEALTH_FILE}`;
      const q = shellQuote(file);
      const out = await read(
        system,
        `if [ -L ${q} ] || { [ -e ${q} ] && [ ! -f ${q} ]; }; then echo notfile; elif [ -f ${q} ]; then echo present; head -c ${SYSTEM_HEALTH_LIMIT + 1} ${q}; else echo absent; fi`,
        SYSTEM_HEALTH_FILE,
      );
      const newline = out.indexOf("\n");
      const status = out.slice(0, newline);
      if (status === "absent") return undefined;
      if (status !== "present") {
        throw new OperationError(
          "bad-system-health",
          `${file} on ${target.name}: not a regular file`,
        );
      }
      return parseSystemHealth(Buffer.from(out.slice(newline + 1), "utf8"), file);
    },
    async bootParts(system) {
      const command = BOOT_PARTS.map(
        (part) => `realpath -e ${shellQuote(`${system}/${part}`)} 2>/dev/null || echo`,
      ).join("; ");
      const lines = (await read(system, command, "the boot parts")).split("\n");
      const entries = BOOT_PARTS.map((part, i) => [part, lines[i] ? lines[i] : null]);
      return Object.fromEntries(entries) as Record<BootPart, string | null>;
    },
  };
}
