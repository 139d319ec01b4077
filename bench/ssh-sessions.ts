// A stress of the ssh sessions a deploy's survey runs, on a loaded machine: a lab of N hosts,
// each asked `status --check-paths` through the ssh delivery (32 hosts at once, the survey's
// concurrency) over a shared connection made anew in every round, while busy loops (which end
// by themselves) load the machine. Counts the sessions that gave no result: a deployer whose
// event loop was held up past the streams' grace used to lose whole answers this way ("ssh
// exited with 0 and no result", about 1 session in 100 at load 25-35; docs/performance.md).
//
//   npm run bench:ssh-sessions -- [--hosts 50] [--rounds 10] [--busy 4]
//
// Exits 1 when a session gave no result.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { parseFleet } from "../src/fleet/fleet-file.js";
import type { StorePath } from "../src/nix/store-path.js";
import { mapLimit } from "../src/util/pool.js";
import { timed } from "./timed.js";

const NIXSHIP = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
// The ssh delivery as the nixship CLI runs it: from dist/, which finds activate.sh in src/.
const DIST = new URL("../../dist/", import.meta.url);
const { SshDelivery } = (await import(
  new URL("delivery/ssh.js", DIST).href
)) as typeof import("../src/delivery/ssh.js");
const { closeSharedConnections } = (await import(
  new URL("delivery/ssh-transport.js", DIST).href
)) as typeof import("../src/delivery/ssh-transport.js");
/** The survey's concurrency (STATUS_CONCURRENCY in deploy/deploy.ts). */
const AT_ONCE = 32;
/** Seconds a busy loop runs at most: it ends by itself should the bench die. */
const BUSY_SECONDS = 1800;
/** Paths each host is asked about (canonical, absent from the lab's hosts). */
const ASKED = [
  "/nix/store/00000000000000000000000000000000-nixship-bench-a",
  "/nix/store/11111111111111111111111111111111-nixship-bench-b",
] as StorePath[];

const { values } = parseArgs({
  options: {
    hosts: { type: "string", default: "50" },
    rounds: { type: "string", default: "10" },
    busy: { type: "string", default: "4" },
  },
});
const hosts = Number(values.hosts);
const rounds = Number(values.rounds);
const busy = Number(values.busy);
for (const [name, n, max] of [
  ["--hosts", hosts, 200],
  ["--rounds", rounds, 1000],
  ["--busy", busy, 64],
] as const) {
  if (!Number.isSafeInteger(n) || n < (name === "--busy" ? 0 : 1) || n > max) {
    throw new Error(`${name} takes a whole number up to ${max}`);
  }
}

const work = await mkdtemp(join(tmpdir(), "nixship-bench-ssh-"));
const env = { ...process.env, NIXSHIP_LAB_DIR: join(work, "labs") };
const name = `ss${process.pid.toString(36)}`.slice(0, 8);
const loads: ChildProcess[] = [];
let failed = 0;
try {
  const up = await timed(
    process.execPath,
    [NIXSHIP, "lab", "up", String(hosts), "--name", name, "--json"],
    env,
    600,
  );
  if (up.code !== 0) throw new Error(`lab up failed: ${up.stderr.slice(-2000)}`);
  const lab = JSON.parse(up.stdout) as { dir: string };
  const fleetFile = join(lab.dir, "nixship.json");
  const fleet = parseFleet(await readFile(fleetFile, "utf8"), fleetFile);
  const delivery = new SshDelivery(fleet.ssh);
  for (let i = 0; i < busy; i++) {
    loads.push(
      spawn(process.execPath, ["-e", `const e=Date.now()+${BUSY_SECONDS}e3;while(Date.now()<e);`], {
        stdio: "ignore",
      }),
    );
  }
  console.log(
    `${hosts} hosts, ${rounds} rounds of ${AT_ONCE} sessions at once, ${busy} busy loops; load ${loadavg()[0]?.toFixed(1)}`,
  );
  const errors = new Map<string, number>();
  const started = performance.now();
  let peakLoad = 0;
  for (let round = 1; round <= rounds; round++) {
    const answers = await mapLimit(fleet.hosts, AT_ONCE, async (host) => {
      const s = await delivery.status(host, undefined, ASKED);
      return s.reachable ? undefined : `${host.name}: ${s.error}`;
    });
    // Every round makes its shared connections anew, as a first deploy does.
    await closeSharedConnections();
    const lost = answers.filter((a) => a !== undefined);
    for (const a of lost) {
      const why = a.slice(a.indexOf(": ") + 2);
      errors.set(why, (errors.get(why) ?? 0) + 1);
    }
    failed += lost.length;
    peakLoad = Math.max(peakLoad, loadavg()[0] ?? 0);
    console.log(
      `round ${round}: ${hosts - lost.length} answered, ${lost.length} did not${lost.length ? ` (${lost.join("; ")})` : ""}; load ${loadavg()[0]?.toFixed(1)}`,
    );
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(
    `${hosts * rounds} sessions in ${seconds.toFixed(1)} s, peak load ${peakLoad.toFixed(1)}: ${failed} gave no result`,
  );
  for (const [why, n] of errors) console.log(`  ${n} × ${why}`);
} finally {
  for (const l of loads) l.kill();
  await closeSharedConnections();
  await timed(process.execPath, [NIXSHIP, "lab", "down", "--name", name], env, 300);
  await rm(work, { recursive: true, force: true });
}
process.exitCode = failed > 0 ? 1 : 0;
