// Whole deploys on a loaded machine: a lab of N hosts deployed D times in a row, each deploy
// moving every host to another of the example systems (v1 → v2 → v3 → v1 …), while busy loops
// (which end by themselves) load the machine. Every host's outcome is read from the deploy's
// summary; a host that was not activated (could not be reached, its ssh gave no result, its
// session failed) is named with what it said. This is where "ssh exited with 0 and no result"
// showed at 50 hosts (docs/performance.md, "Deploying a fleet").
//
//   npm run bench:deploy-stress -- [--hosts 50] [--deploys 10] [--busy 4]
//
// Exits 1 when any host of any deploy was not activated.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { DeployEvent } from "../src/deploy/events.js";
import { labGateway } from "../src/lab/layout.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { labsDownSync } from "./fleet-labs.js";
import { machineCpuSeconds } from "./stats.js";
import { tail, timed } from "./timed.js";

const NIXSHIP = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
const EXAMPLES = fileURLToPath(new URL("../../examples", import.meta.url));
const SYSTEMS = ["web-v1", "web-v2", "web-v3"] as const;
/** Seconds a busy loop runs at most: it ends by itself should the bench die. */
const BUSY_SECONDS = 3600;
/** Seconds one deploy may take before the bench calls it hung. */
const deployTimeout = (hosts: number) => 240 + 3 * hosts;

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "50" },
    deploys: { type: "string", default: "10" },
    busy: { type: "string", default: "4" },
  },
});
const hosts = Number(values.hosts);
const deploys = Number(values.deploys);
const busy = Number(values.busy);
for (const [name, n, min, max] of [
  ["--hosts", hosts, 1, 200],
  ["--deploys", deploys, 1, 100],
  ["--busy", busy, 0, 64],
] as const) {
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new Error(`${name} takes a whole number from ${min} to ${max}`);
  }
}

const work = await mkdtemp(join(tmpdir(), "nixship-bench-stress-"));
const env: NodeJS.ProcessEnv = {
  ...process.env,
  NIX_CONFIG: TEST_NIX_CONFIG,
  NIXSHIP_LAB_DIR: join(work, "labs"),
};
// A lab name of this run's own, so that another bench or suite on the machine is not touched.
const name = `ds${process.pid.toString(36)}`.slice(0, 8);
const loads: ChildProcess[] = [];
const failures: string[] = [];
const stopLoads = () => {
  for (const p of loads) p.kill("SIGKILL");
};
process.once("SIGINT", () => {
  stopLoads();
  labsDownSync(NIXSHIP, env);
  process.exit(130);
});
try {
  const up = await timed(
    process.execPath,
    [NIXSHIP, "lab", "up", String(hosts), "--name", name, "--json"],
    env,
    120 + 2 * hosts,
  );
  if (up.code !== 0) throw new Error(`lab up exited ${up.code}:\n${tail(up.stderr)}`);
  const lab = JSON.parse(up.stdout) as {
    number: number;
    files: { fleet: string; cacheKey: string };
  };
  const gateway = labGateway(lab.number);
  for (let i = 0; i < busy; i++) {
    loads.push(
      spawn(process.execPath, ["-e", `const e=Date.now()+${BUSY_SECONDS}e3;while(Date.now()<e);`], {
        stdio: "ignore",
      }),
    );
  }
  console.log(
    `${hosts} hosts, ${deploys} deploys, ${busy} busy loops; load at start ${loadavg()[0]?.toFixed(1)}`,
  );
  console.log("deploy  to      wall      machine CPU-s   load  activated  not activated");
  for (let d = 0; d < deploys; d++) {
    const system = SYSTEMS[(d + 1) % SYSTEMS.length] as string;
    const doc = JSON.parse(await readFile(lab.files.fleet, "utf8")) as {
      hosts: Record<string, { system: string }>;
    };
    for (const host of Object.values(doc.hosts)) host.system = `path:${EXAMPLES}#${system}`;
    await writeFile(lab.files.fleet, `${JSON.stringify(doc, null, 2)}\n`);
    const cpuBefore = machineCpuSeconds();
    const r = await timed(
      process.execPath,
      [
        NIXSHIP,
        "deploy",
        "--fleet",
        lab.files.fleet,
        "--key",
        lab.files.cacheKey,
        "--serve-cache",
        `${gateway}:0`,
        "--canary",
        "1",
        "--max-failures",
        String(hosts),
        "--json",
      ],
      env,
      deployTimeout(hosts),
    );
    const busySeconds = machineCpuSeconds() - cpuBefore;
    const summary = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as DeployEvent)
      .find((e) => e.type === "summary");
    const results = summary?.type === "summary" ? summary.results : [];
    const bad = results.filter((x) => x.outcome.status !== "activated");
    const activated = results.length - bad.length;
    console.log(
      `${String(d + 1).padStart(6)}  ${system}  ${r.seconds.toFixed(1).padStart(6)} s  ${busySeconds.toFixed(1).padStart(15)}  ${(loadavg()[0] ?? 0).toFixed(1).padStart(5)}  ${String(activated).padStart(9)}  ${bad.length}`,
    );
    if (results.length !== hosts) {
      failures.push(
        `deploy ${d + 1} exited ${r.code} with ${results.length} of ${hosts} hosts in its summary:\n${tail(r.stderr)}`,
      );
    }
    for (const x of bad) failures.push(`deploy ${d + 1}: ${x.host}: ${JSON.stringify(x.outcome)}`);
  }
} finally {
  stopLoads();
  await timed(process.execPath, [NIXSHIP, "lab", "down", "--all"], env, 600);
  await rm(work, { recursive: true, force: true });
}
if (failures.length > 0) {
  console.log(`\n${failures.length} hosts not activated:`);
  for (const f of failures.slice(0, 50)) console.log(`  ${f}`);
  process.exitCode = 1;
} else {
  console.log(`\nevery host of every deploy was activated (${hosts * deploys} host deploys)`);
}
