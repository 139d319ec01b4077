// The fleet benchmark's hosts: one lab up to a lab's 200 hosts, past that several labs of the
// bench's own (fba, fbb, ...) joined into one fleet: one fleet file, one ssh_config and one
// known_hosts, and the deployer's cache served on the first lab's bridge address, which the
// other labs' hosts reach by a route the bench adds in their namespaces. The product's lab is
// unchanged: a lab host has no default route (lab-network.ts), so without that route a host
// of lab 2 cannot reach 10.231.1.1; with it, its packets go to its own bridge, where the
// deployer's machine takes them as its own address (no forwarding is involved).
import { spawnSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { HostShell } from "../src/lab/host-shell.js";
import { labGateway, MAX_LAB_HOSTS } from "../src/lab/layout.js";
import { mapLimit } from "../src/util/pool.js";
import { tail, timed } from "./timed.js";

/** The bench's labs, in order: at most this many, so at most 2,000 hosts. */
const LAB_NAMES = ["fba", "fbb", "fbc", "fbd", "fbe", "fbf", "fbg", "fbh", "fbi", "fbj"];
export const MAX_BENCH_HOSTS = LAB_NAMES.length * MAX_LAB_HOSTS;

/** What `nixship lab up --json` says of a lab. */
interface Lab {
  readonly name: string;
  readonly number: number;
  readonly dir: string;
  readonly hosts: readonly {
    readonly name: string;
    readonly address: string;
    readonly netns: string;
  }[];
  readonly files: {
    readonly sshConfig: string;
    readonly knownHosts: string;
    readonly fleet: string;
    readonly cacheKey: string;
  };
}

export interface BenchHost {
  readonly name: string;
  readonly address: string;
  readonly netns: string;
  /** Its lab's directory (the host's files are under hosts/NAME there). */
  readonly labDir: string;
}

/** The labs of one size, joined into one fleet. */
export interface BenchFleet {
  readonly labs: readonly Lab[];
  readonly hosts: readonly BenchHost[];
  /** Where the deployer serves the cache: the first lab's bridge address. */
  readonly cacheAddress: string;
  readonly files: {
    readonly sshConfig: string;
    readonly knownHosts: string;
    readonly fleet: string;
    readonly cacheKey: string;
  };
}

/** How `hosts` split into labs: as few as hold them, of sizes differing by one at most. */
export function labSizes(hosts: number): number[] {
  const labs = Math.ceil(hosts / MAX_LAB_HOSTS);
  if (labs > LAB_NAMES.length) {
    throw new Error(`--hosts ${hosts}: the bench joins at most ${LAB_NAMES.length} labs`);
  }
  return Array.from(
    { length: labs },
    (_, i) => Math.floor(hosts / labs) + (i < hosts % labs ? 1 : 0),
  );
}

/**
 * Brings up the labs for `hosts` hosts one after the other (each `lab up` uses the machine's
 * cores on its own), routes every host to the first lab's bridge address, and writes the joined
 * fleet's files into `dir`. A lab that came up is taken down again if a later step fails.
 */
export async function fleetUp(
  nixship: string,
  hosts: number,
  env: NodeJS.ProcessEnv,
  dir: string,
  /** `lab up --sh`: the hosts' sh (bash, as NixOS's, or the machine's). */
  shell: HostShell = "system",
): Promise<BenchFleet> {
  const labs: Lab[] = [];
  try {
    for (const [i, size] of labSizes(hosts).entries()) {
      const r = await timed(
        process.execPath,
        [
          nixship,
          "lab",
          "up",
          String(size),
          "--name",
          LAB_NAMES[i] as string,
          "--sh",
          shell,
          "--json",
        ],
        env,
        120 + 2 * size,
      );
      if (r.code !== 0) throw new Error(`lab up exited ${r.code}:\n${tail(r.stderr)}`);
      labs.push(JSON.parse(r.stdout) as Lab);
    }
    const first = labs[0] as Lab;
    const cacheAddress = labGateway(first.number);
    await mapLimit(
      labs.slice(1).flatMap((lab) => lab.hosts.map((h) => ({ lab, h }))),
      16,
      async ({ lab, h }) => {
        const r = await timed(
          "ip",
          ["-n", h.netns, "route", "add", cacheAddress, "via", labGateway(lab.number)],
          env,
          10,
        );
        if (r.code !== 0) throw new Error(`route of ${h.name} to ${cacheAddress}: ${r.stderr}`);
      },
    );
    await mkdir(dir, { recursive: true });
    const files = {
      sshConfig: join(dir, "ssh_config"),
      knownHosts: join(dir, "known_hosts"),
      fleet: join(dir, "nixship.json"),
      cacheKey: first.files.cacheKey,
    };
    await writeJoinedFiles(labs, files);
    return {
      labs,
      hosts: labs.flatMap((lab) => lab.hosts.map((h) => ({ ...h, labDir: lab.dir }))),
      cacheAddress,
      files,
    };
  } catch (err) {
    await labsDown(nixship, env);
    throw err;
  }
}

/**
 * One ssh_config (each lab's Host blocks, naming the joined known_hosts), one known_hosts, and
 * one fleet file: the first lab's, with every lab's hosts and the joined ssh files.
 */
async function writeJoinedFiles(labs: readonly Lab[], files: BenchFleet["files"]): Promise<void> {
  const read = (file: string) => readFile(file, "utf8");
  const configs = await Promise.all(labs.map((l) => read(l.files.sshConfig)));
  await writeFile(
    files.sshConfig,
    configs
      .map((text) => text.replace(/^(\s*UserKnownHostsFile) .*$/gm, `$1 ${files.knownHosts}`))
      .join("\n"),
  );
  await writeFile(
    files.knownHosts,
    (await Promise.all(labs.map((l) => read(l.files.knownHosts)))).join(""),
  );
  const docs = await Promise.all(
    labs.map(
      async (l) =>
        JSON.parse(await read(l.files.fleet)) as {
          ssh: Record<string, unknown>;
          hosts: Record<string, unknown>;
        },
    ),
  );
  const doc = docs[0] as (typeof docs)[number];
  doc.ssh = { ...doc.ssh, configFile: files.sshConfig, knownHosts: files.knownHosts };
  doc.hosts = Object.assign({}, ...docs.map((d) => d.hosts));
  await writeFile(files.fleet, `${JSON.stringify(doc, null, 2)}\n`);
}

/** Takes down every lab in the bench's lab directory (`lab down --all`). */
export async function labsDown(nixship: string, env: NodeJS.ProcessEnv): Promise<void> {
  const r = await timed(process.execPath, [nixship, "lab", "down", "--all"], env, 600);
  if (r.code !== 0) console.error(`lab down --all exited ${r.code}:\n${tail(r.stderr)}`);
}

/** The same, synchronously: for SIGINT and the bench's last word. */
export function labsDownSync(nixship: string, env: NodeJS.ProcessEnv): void {
  spawnSync(process.execPath, [nixship, "lab", "down", "--all"], {
    env,
    stdio: "ignore",
    timeout: 600_000,
  });
}
