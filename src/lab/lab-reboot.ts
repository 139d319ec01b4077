// `nixship lab reboot HOST`: a lab host reboots as a machine would. Its agent stops first, as
// its service unit has it (it finishes the activation in progress), then everything left in its
// namespaces (its sshd, every session, its services); the boot loader
// (lab-boot.ts) picks an entry from the host's profile and counts the try; the host starts
// again in a fresh mount namespace (its /run, /tmp and /root empty again), runs the chosen
// system's init (which points /run/booted-system at it and starts its services), then sshd, and
// its agent when the lab has agents. A system that does not boot is tried again while the
// entry has tries left, then the loader falls back; without counting the host stays down.
//
// The host's power button (POWER, copied to /run/nixship-lab/power at each boot) is how a host
// asks for its own reboot (`systemctl reboot` of the example systems): it runs this command
// from the machine's side (PID 1's mount and network namespaces), detached, a second later, so
// that what asked can answer first.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { InputError, OperationError } from "../errors.js";
import { withLock } from "../store/fs-lock.js";
import { shellQuote } from "../util/shell-quote.js";
import { hostBinds, startLabAgent, stopHostAgent } from "./lab-agents.js";
import { anchorName } from "./lab-anchor.js";
import { type BootChoice, bootCounting, profileGenerations, startBoot } from "./lab-boot.js";
import { HostDidNotBoot, powerScriptPath, startHost, stopProcesses } from "./lab-host.js";
import { netnsPids } from "./lab-network.js";
import { type LabHostState, type LabState, readLabState, writeLabState } from "./lab-state.js";
import { type LabHostLayout, type LabLayout, labLayout } from "./layout.js";

const CLI = fileURLToPath(new URL("../cli/bin.js", import.meta.url));

/** Boot attempts one reboot makes at most (a counted entry is tried until its tries run out). */
const MAX_BOOT_ATTEMPTS = 12;

/** Writes the host's power button (lab up), which reaches the machine through the lab's anchor. */
export async function writePowerScript(
  lab: LabLayout,
  host: LabHostLayout,
  anchor: number,
): Promise<void> {
  const command = [
    "env",
    `NIXSHIP_LAB_DIR=${join(lab.dir, "..")}`,
    process.execPath,
    CLI,
    "lab",
    "reboot",
    host.name,
    "--name",
    lab.name,
    "--after",
    "1",
  ]
    .map(shellQuote)
    .join(" ");
  const log = shellQuote(join(host.dir, "power.log"));
  const script = `#!/bin/sh
# The power button of lab host ${host.name} (a stand-in for its firmware): "reboot" has the lab
# reboot this host from the machine's side, a second from now, and returns at once.
case \${1-} in
  reboot) ;;
  *) echo "usage: $0 reboot" >&2; exit 2 ;;
esac
if [ "$(tr '\\0' ' ' </proc/${anchor}/cmdline 2>/dev/null)" != ${shellQuote(`${anchorName(lab)} infinity `)} ]; then
  echo "power: the lab's anchor (pid ${anchor}) is gone: take the lab down and up again" >&2
  exit 1
fi
setsid nsenter -t ${anchor} -m -n -- /bin/sh -c ${shellQuote(`exec ${command} </dev/null >>${log} 2>&1`)} </dev/null >/dev/null 2>&1 &
echo "power: ${host.name} reboots in 1 s" >&2
`;
  await writeFile(powerScriptPath(host), script, { mode: 0o755 });
}

/** One boot attempt of a reboot, as `lab reboot` reports it. */
export interface BootAttempt {
  /** The generation and system the loader chose (undefined: the host has no profile yet). */
  readonly generation?: number;
  readonly system?: string;
  /** Tries the entry had left before this one (undefined: not counted). */
  readonly triesLeft?: number;
  readonly booted: boolean;
  /** Why it did not boot: the end of its console. */
  readonly console?: string;
}

export interface LabRebootResult {
  readonly host: string;
  /** Whether the host is up (sshd listens) after the reboot. */
  readonly up: boolean;
  readonly attempts: readonly BootAttempt[];
  /** Whether the host counts boots. */
  readonly counting: boolean;
}

export interface LabRebootOptions {
  /** Seconds to wait before the host goes down (the power button's "a second from now"). */
  readonly after?: number;
  /**
   * The generation whose entry to boot first, as someone at the boot menu picks it (the
   * profile stays as it is); later attempts, after a failed boot, are the loader's choice.
   */
  readonly entry?: number;
  readonly onAttempt?: (attempt: BootAttempt) => void;
}

/** Reboots one host of a lab: down, then boot (counted tries, fallback), then its agent. */
export async function labReboot(
  labsDirPath: string,
  labName: string,
  hostName: string,
  options: LabRebootOptions = {},
): Promise<LabRebootResult> {
  if (process.getuid?.() !== 0) {
    throw new OperationError("lab-needs-root", "nixship lab reboot needs root (namespaces)", {
      hint: "run it as root, e.g. with sudo",
    });
  }
  const dir = join(labsDirPath, labName);
  const state = await readLabState(dir);
  if (state === undefined) {
    throw new InputError("unknown-lab", `there is no lab '${labName}'`, {
      hint: "list the labs with 'nixship lab list'",
    });
  }
  const layout = labLayout(labsDirPath, state.name, state.number, state.hosts.length);
  const host = layout.hosts.find((h) => h.name === hostName);
  if (host === undefined) {
    throw new InputError("unknown-lab-host", `lab '${labName}' has no host '${hostName}'`, {
      hint: `its hosts: ${layout.hosts.map((h) => h.name).join(", ")}`,
    });
  }
  if (options.entry !== undefined) {
    // Checked before the host goes down: a menu offers only the profile's generations.
    const { generations } = await profileGenerations(host.dir);
    if (!generations.has(options.entry)) {
      const have = [...generations.keys()].sort((a, b) => a - b);
      throw new InputError(
        "unknown-boot-entry",
        `${hostName} has no boot entry for generation ${options.entry}`,
        {
          hint:
            have.length === 0
              ? "it has no system profile yet: reboot it without --entry"
              : `its boot menu offers generation ${have.join(", ")}`,
        },
      );
    }
  }
  const after = options.after ?? 0;
  if (after > 0) await new Promise((r) => setTimeout(r, after * 1000));
  // Down as a machine shuts down: its agent's service stops as its unit has it (TERM to the
  // agent, which finishes the activation in progress, KillMode=mixed), then every process left.
  const runningAgent = state.hosts.find((h) => h.name === hostName)?.agentPid;
  if (runningAgent !== undefined) await stopHostAgent(runningAgent);
  await stopProcesses(await netnsPids(host.netns));
  const counting = (await bootCounting(host.dir)) !== undefined;
  const binds = hostBinds(layout, host, state.agents === true);
  const nix = state.nixBin && state.nix ? { bin: state.nixBin, version: state.nix } : undefined;
  const software = { nix, shell: state.shell };
  const attempts: BootAttempt[] = [];
  let pid: number | undefined;
  while (pid === undefined && attempts.length < MAX_BOOT_ATTEMPTS) {
    const choice: BootChoice | undefined = await startBoot(
      host.dir,
      attempts.length === 0 ? options.entry : undefined,
    );
    const chosen = {
      ...(choice === undefined
        ? {}
        : { generation: choice.entry.generation, system: choice.entry.system }),
      ...(choice?.entry.triesLeft === undefined ? {} : { triesLeft: choice.entry.triesLeft }),
    };
    try {
      pid = await startHost(host, binds, software, {
        system: choice?.entry.system,
        countedEntry: choice?.counted ? choice.bootedFile : undefined,
      });
      const attempt: BootAttempt = { ...chosen, booted: true };
      attempts.push(attempt);
      options.onAttempt?.(attempt);
    } catch (err) {
      if (!(err instanceof HostDidNotBoot)) throw err;
      await stopProcesses(await netnsPids(host.netns));
      const attempt: BootAttempt = { ...chosen, booted: false, console: err.console };
      attempts.push(attempt);
      options.onAttempt?.(attempt);
      // Without a counter to spend, the loader would pick the same entry forever: it halts.
      if (!choice?.counted) break;
    }
  }
  // Its agent is one of its services: it starts with the host (it reads its state anew).
  const agentPid =
    pid !== undefined && state.agents === true ? await startLabAgent(host, pid) : undefined;
  await updateHost(layout, hostName, pid, agentPid);
  return { host: hostName, up: pid !== undefined, attempts, counting };
}

/** Records the host's new sshd pid (0: down), under the lab's lock (hosts reboot at once). */
async function updateHost(
  layout: LabLayout,
  name: string,
  pid: number | undefined,
  agentPid: number | undefined,
) {
  await withLock(join(layout.dir, "lab.lock"), async () => {
    const state = await readLabState(layout.dir);
    if (state === undefined) return;
    const hosts = state.hosts.map((h): LabHostState => {
      if (h.name !== name) return h;
      const { agentPid: _, ...rest } = h;
      return { ...rest, pid: pid ?? 0, ...(agentPid === undefined ? {} : { agentPid }) };
    });
    await writeLabState(layout.dir, { ...state, hosts } satisfies LabState);
  });
}
