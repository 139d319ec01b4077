// A lab's record of itself (lab.json in its directory): its number and each host's sshd pid.
// Written atomically; read back by `lab list`, `lab exec` and `lab down`.
import { readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "../errors.js";

export interface LabHostState {
  readonly name: string;
  readonly address: string;
  readonly netns: string;
  /** The host's sshd: every process of the host runs in its namespaces. */
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
  readonly hosts: readonly LabHostState[];
}

export const LAB_STATE_FILE = "lab.json";

export async function readLabState(labDir: string): Promise<LabState | undefined> {
  const file = join(labDir, LAB_STATE_FILE);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const state = JSON.parse(text) as LabState;
    if (state.version !== 1 || !Array.isArray(state.hosts)) throw new Error("unknown shape");
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
    throw err;
  }
  const states = await Promise.all(
    names.sort().map((name) => readLabState(join(labsDir, name)).catch(() => undefined)),
  );
  return states.filter((s): s is LabState => s !== undefined);
}
