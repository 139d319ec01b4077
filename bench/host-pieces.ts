// What each piece of one ssh deploy costs a lab host in CPU (`node dist-bench/bench/host-pieces.js
// [--reps N] [--host-sh bash]`, after `npm run build && npx tsc -p tsconfig.bench.json`): on a
// one-host lab whose processes (sshd and all it starts) are in a control group of the bench's
// own, each piece is run N times (10 by default) through the deployer's own code, and the
// group's CPU seconds are read around each run. The sequential loop's copy + switch of the same
// change is measured alike. The host's CPU is counted whatever the rest of the machine does.
// `--host-sh bash`: the host's sh is bash, as NixOS's (`lab up --sh bash`). Linux and root
// only; asserts nothing.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { SshTarget } from "../src/delivery/ssh-transport.js";
import { parseHostShell } from "../src/lab/host-shell.js";
import { nixship } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { serveLabCache } from "../support/serve.js";
import { CgroupMeter, cgroupsAvailable } from "./cgroup-meter.js";
import { backToSystemCommand, SYSTEM_PROFILE } from "./host-reset.js";
import { median } from "./stats.js";
import { timed } from "./timed.js";

// The deployer's code as the nixship CLI runs it: from dist/, which holds the built activate.sh.
const DIST = new URL("../../dist/", import.meta.url);
const load_ = async <T>(file: string) => (await import(new URL(file, DIST).href)) as T;
const { sshSettings } = await load_<typeof import("../src/delivery/ssh-host-key.js")>(
  "delivery/ssh-host-key.js",
);
const { checkNewConnection } = await load_<typeof import("../src/delivery/ssh-preflight.js")>(
  "delivery/ssh-preflight.js",
);
const { settlingTarget } = await load_<typeof import("../src/delivery/ssh-settle-kex.js")>(
  "delivery/ssh-settle-kex.js",
);
const { closeSharedConnections, runActivate, runOverSsh } = await load_<
  typeof import("../src/delivery/ssh-transport.js")
>("delivery/ssh-transport.js");
const { activateArgs, CHECK_PATHS_VARIABLE, confirmArgs, statusArgs } =
  await load_<typeof import("../src/host/activation.js")>("host/activation.js");
const EXAMPLES = fileURLToPath(new URL("../../examples", import.meta.url));
const ENV: NodeJS.ProcessEnv = { ...process.env, NIX_CONFIG: TEST_NIX_CONFIG };
/** Seconds the host's processes get to end after a piece (the watcher, a closing session). */
const SETTLE_S = 5;

interface Lab {
  readonly host: string;
  readonly sshdPid: number;
  readonly sshConfig: string;
  readonly number: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      reps: { type: "string", default: "10" },
      // The host's sh, as lab up --sh takes it: bash (NixOS's) or system (the default, dash here).
      "host-sh": { type: "string" },
    },
  });
  const hostSh = parseHostShell(values["host-sh"] ?? "system");
  const reps = Math.min(50, Math.max(1, Number(values.reps) || 10));
  if (!cgroupsAvailable()) throw new Error("needs root and a cgroup file system");
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-pieces-"));
  const labEnv = { ...ENV, NIXSHIP_LAB_DIR: join(work, "labs") };
  const meter = await CgroupMeter.create(`nixship-bench-pieces-${process.pid}`);
  console.log(`${reps} runs of each piece; the host's sh: ${hostSh}; ${load()}`);
  try {
    const [v1, v2] = await buildSystems();
    const own = await ownPaths(v2, v1);
    const up = await nixship(["lab", "up", "1", "--name", "hpc", "--sh", hostSh, "--json"], {
      env: labEnv,
    });
    if (up.code !== 0) throw new Error(`lab up: ${up.stderr}`);
    const json = JSON.parse(up.stdout) as {
      number: number;
      hosts: { name: string; pid: number }[];
      files: { sshConfig: string };
    };
    const lab: Lab = {
      host: json.hosts[0]?.name as string,
      sshdPid: json.hosts[0]?.pid as number,
      sshConfig: json.files.sshConfig,
      number: json.number,
    };
    const { server, publicKey } = await serveLabCache(work, [v1, v2], `10.231.${lab.number}.1`);
    try {
      await measureAll(lab, meter, reps, { v1, v2, own, cache: server.url, publicKey });
    } finally {
      await closeSharedConnections();
      await server.stop();
    }
  } finally {
    await nixship(["lab", "down", "--all"], { env: labEnv });
    await meter.remove();
    await rm(work, { recursive: true, force: true });
  }
}

interface Systems {
  readonly v1: string;
  readonly v2: string;
  /** The paths of v2's closure that v1's lacks (the change a host receives). */
  readonly own: readonly string[];
  readonly cache: string;
  readonly publicKey: string;
}

async function measureAll(lab: Lab, meter: CgroupMeter, reps: number, s: Systems) {
  await meter.add(await namespacePids(lab.sshdPid));
  const target: SshTarget = {
    name: lab.host,
    destination: lab.host,
    user: undefined,
    configFile: lab.sshConfig,
    knownHosts: undefined,
  };
  const settings = await sshSettings(target);
  const settling = await settlingTarget(target, settings);
  const onMaster = async (command: string) => {
    const r = await runOverSsh(target, command);
    if (r.code !== 0) throw new Error(`${command}: exit ${r.code}: ${r.stderr.slice(-2000)}`);
  };
  const script = async (args: string[], fresh: boolean, variables = {}) => {
    const r = await runActivate(fresh ? settling : target, args, {
      ...(fresh ? { fresh: true } : {}),
      variables,
    });
    if (r.code !== 0) throw new Error(`${args[0]}: exit ${r.code}: ${r.failure}`);
  };
  // The host goes back to v1 and forgets v2, so each activation and each loop's copy get it anew.
  const reset = async () => {
    await onMaster(
      `${backToSystemCommand(s.v1)} && nix-store --delete ${s.own.join(" ")} >/dev/null 2>&1; ` +
        `! nix-store --check-validity ${s.v2} 2>/dev/null`,
    );
  };
  const measure = async (
    name: string,
    piece: () => Promise<void>,
    before?: () => Promise<void>,
    after?: () => Promise<void>,
  ) => {
    const ms: number[] = [];
    for (let i = 0; i < reps; i++) {
      await before?.();
      const baseline = await settled(meter, undefined);
      await meter.reset();
      await piece();
      await settled(meter, baseline);
      ms.push((await meter.usage()).cpuSeconds * 1000);
      await after?.();
    }
    const sorted = [...ms].sort((a, b) => a - b);
    console.log(
      `${name.padEnd(58)} median ${median(ms).toFixed(1).padStart(6)} ms  ` +
        `(${sorted[0]?.toFixed(1)}-${sorted.at(-1)?.toFixed(1)})`,
    );
  };

  // The first system, confirmed: every activation below has a generation to go back to.
  await script(
    activateArgs({
      path: s.v1,
      action: "switch",
      substituters: [s.cache],
      trustedKeys: [s.publicKey],
      confirmTimeout: 60,
      token: "hpfirst",
    }),
    false,
  );
  await script(confirmArgs("hpfirst"), true);
  const ssh = (args: string[]) =>
    timed("ssh", ["-F", lab.sshConfig, ...args], ENV, 60).then((r) => {
      if (r.code !== 0) throw new Error(`ssh ${args.join(" ")}: ${r.stderr}`);
    });
  await measure("a new login (ssh -o ControlPath=none HOST true)", () =>
    ssh(["-o", "ControlPath=none", lab.host, "true"]),
  );
  await measure("a new settling login (the confirmation's key exchange)", async () => {
    const r = await runOverSsh(settling, "true", { fresh: true });
    if (r.code !== 0) throw new Error(r.stderr);
  });
  await measure("a command over the held master (true)", () => onMaster("true"));
  await measure("the preflight's TCP greeting", async () => {
    const why = await checkNewConnection(settling, settings);
    if (why !== undefined) throw new Error(why);
  });
  await measure("the script over the master: status", () => script(statusArgs(), false));
  await measure("the script over the master: status --check-paths (the survey)", () =>
    script(statusArgs(true), false, { [CHECK_PATHS_VARIABLE]: s.v2 }),
  );
  let n = 0;
  const activate = () =>
    script(
      activateArgs({
        path: s.v2,
        action: "switch",
        substituters: [s.cache],
        trustedKeys: [s.publicKey],
        confirmTimeout: 60,
        token: `hp${n}`,
      }),
      false,
    );
  const confirm = () => script(confirmArgs(`hp${n}`), true);
  await measure(
    "the activation (realise, profile, switch, window)",
    activate,
    async () => {
      await reset();
      n++;
    },
    confirm,
  );
  await measure(
    "the confirmation (a new settling login, confirm, the watcher)",
    confirm,
    async () => {
      await reset();
      n++;
      await activate();
    },
  );
  let to = s.v2;
  await measure("the example switch alone, over the master", () => {
    to = to === s.v2 ? s.v1 : s.v2;
    return onMaster(`${to}/bin/switch-to-configuration switch`);
  });
  await measure(
    "the loop: nix-copy-closure --to, nix-env --set, switch",
    async () => {
      const env = { ...ENV, NIX_SSHOPTS: `-F ${lab.sshConfig}` };
      const copy = await timed("nix-copy-closure", ["--to", lab.host, s.v2], env, 120);
      if (copy.code !== 0) throw new Error(`nix-copy-closure: ${copy.stderr}`);
      await ssh([
        lab.host,
        `nix-env -p ${SYSTEM_PROFILE} --set ${s.v2} && ${s.v2}/bin/switch-to-configuration switch`,
      ]);
    },
    async () => {
      await reset();
      // No held connection of the lab's ssh_config: the loop's one login is counted.
      await timed("ssh", ["-F", lab.sshConfig, "-O", "exit", lab.host], ENV, 10);
    },
  );
  console.log(load());
}

/** Waits until the group holds no more processes than `baseline` (all, when undefined). */
async function settled(meter: CgroupMeter, baseline: number | undefined): Promise<number> {
  const count = async () =>
    (await readFile(meter.procsFiles[0] as string, "utf8")).split("\n").filter(Boolean).length;
  if (baseline === undefined) {
    // What stays: sshd, the service, the held master's session.
    await new Promise((r) => setTimeout(r, 300));
    return count();
  }
  const deadline = Date.now() + SETTLE_S * 1000;
  while ((await count()) > baseline && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return count();
}

/** Every process in the network namespace of `pid` (the host's sshd). */
async function namespacePids(pid: number): Promise<number[]> {
  const r = await timed("ip", ["netns", "identify", String(pid)], ENV, 10);
  const pids = await timed("ip", ["netns", "pids", r.stdout.trim()], ENV, 10);
  return pids.stdout.split("\n").filter(Boolean).map(Number);
}

async function buildSystems(): Promise<[string, string]> {
  const r = await timed(
    "nix",
    ["build", "--no-link", "--json", `path:${EXAMPLES}#web-v1`, `path:${EXAMPLES}#web-v2`],
    ENV,
    600,
  );
  if (r.code !== 0) throw new Error(`nix build: ${r.stderr}`);
  const paths = (JSON.parse(r.stdout) as { outputs: { out: string } }[]).map((b) => b.outputs.out);
  const named = await Promise.all(
    paths.map(async (p) => [(await readFile(`${p}/nixos-version`, "utf8")).trim(), p] as const),
  );
  const byName = new Map(named);
  return [byName.get("web-v1") as string, byName.get("web-v2") as string];
}

async function ownPaths(path: string, base: string): Promise<string[]> {
  const closure = async (p: string) =>
    (await timed("nix-store", ["-qR", p], ENV, 60)).stdout.split("\n").filter(Boolean);
  const old = new Set(await closure(base));
  return (await closure(path)).filter((p) => !old.has(p)).reverse();
}

function load(): string {
  return `load ${loadavg()
    .map((x) => x.toFixed(1))
    .join(" ")}`;
}

await main();
