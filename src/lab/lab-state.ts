// A lab's record of itself (lab.json in its directory): its number and each host's sshd pid.
// Written atomically; read back by `lab list`, `lab exec` and `lab down`.
import { readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "../errors.js";

export interface LabHostState {
  readonly name: string;
  readonly address: string;
  readonly netns: string;
  /** The host's sshd: every process of the host runs in its namespaces (0: the host is down). */
  readonly pid: number;
  /** Labs with agents: the pid of the host's agent, once started. */
  readonly agentPid?: number;
}

export interface LabState {
  readonly version: 1;
  readonly name: string;
  readonly number: number;
  readonly createdAt: string;
  /** `lab up --agents`: each host runs a pull agent (lab-agents.ts). */
  readonly agents?: boolean;
  /** `lab up --nix`: the version line of the Nix the hosts run, when not the machine's. */
  readonly nix?: string;
  /** `lab up --nix`: the directory of that Nix (bound into a host again when it reboots). */
  readonly nixBin?: string;
  /** `lab up --sh bash`: the hosts' sh is bash (host-shell.ts); absent: the machine's. */
  readonly shell?: "bash";
  /** `lab up --pinned`: the hosts run pinned systems and are deployed to as `deploy`. */
  readonly pinned?: boolean;
  readonly hosts: readonly LabHostState[];
}

export const LAB_STATE_FILE = "lab.json";

export async function readLabState(labDir: string): Promise<LabState | undefined> {
  const file = join(labDir, LAB_STATE_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    // No state file, or no directory at all (a file beside the labs): not a lab.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw unreadable(file, err);
  }
  try {
    const state = JSON.parse(text) as LabState;
    if (state.version !== 1 || !Array.isArray(state.hosts)) throw new Error("unknown shape");
    const bad = state.hosts.findIndex((host: unknown) => hostProblem(host) !== undefined);
    if (bad !== -1) throw new Error(`hosts[${bad}] ${hostProblem(state.hosts[bad])}`);
    return state;
  } catch (err) {
    throw new InputError(
      "bad-lab-state",
      `${file} is not a lab state file: ${(err as Error).message}`,
      {
        hint: "'nixship lab down --all' cleans up every lab, whatever its files say",
      },
    );
  }
}

/** What is wrong with a host of lab.json, or undefined: the fields every lab command reads. */
function hostProblem(host: unknown): string | undefined {
  if (typeof host !== "object" || host === null || Array.isArray(host)) return "is not an object";
  const h = host as Record<string, unknown>;
  for (const key of ["name", "address", "netns"] as const) {
    if (typeof h[key] !== "string" || h[key] === "") return `has no ${key}`;
  }
  for (const key of ["pid", "agentPid"] as const) {
    const value = h[key];
    if (value === undefined && key === "agentPid") continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      return `has no ${key} (a whole number)`;
    }
  }
  return undefined;
}

export async function writeLabState(labDir: string, state: LabState): Promise<void> {
  const file = join(labDir, LAB_STATE_FILE);
  await writeFile(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
}

/** Every lab under `labsDir` with a readable state, by name. */
export async function listLabStates(labsDir: string): Promise<LabState[]> {
  let names: string[];
  try {
    names = await readdir(labsDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw unreadable(labsDir, err);
  }
  // A lab whose state is not a lab state (a crash mid-write) is left to 'lab down --all'; one
  // that cannot be read at all is an error, not a lab that is not there.
  const states = await Promise.all(
    names.sort().map((name) =>
      readLabState(join(labsDir, name)).catch((err: unknown) => {
        if (err instanceof InputError && err.code === "bad-lab-state") return undefined;
        throw err;
      }),
    ),
  );
  return states.filter((s): s is LabState => s !== undefined);
}

/** A lab file or directory that exists but cannot be read: as another user than root, say. */
export function unreadable(path: string, err: unknown): InputError {
  const code = (err as NodeJS.ErrnoException).code ?? String(err);
  return new InputError("lab-unreadable", `cannot read ${path} (${code})`, {
    hint:
      code === "EACCES" || code === "EPERM"
        ? "the lab needs root: run nixship lab commands as root (sudo)"
        : "check the lab directory ($NIXSHIP_LAB_DIR, default /var/lib/nixship/labs)",
  });
}
