// The agents benchmark (`npm run bench:agents`): 1,000 pull agents against s3rver on loopback
// (or, with `--store moto`, moto's S3 server; with `--store dir`, a directory store, which leaves
// the cores to the agents and the deployer), each with its own state directory and a no-op
// Activator (this measures the control plane, not Nix). It measures the agents' requests while
// idle, the time from publishing one release naming every host until all of them report success,
// the LIST and GET calls the deployer (AgentDelivery) makes per poll, and its peak RSS. Prints
// figures; asserts nothing.
//
// The processes: this one coordinates and measures; the agents run in `--agent-procs` children
// (agents-child.ts; default one per CPU), each with its share, so that their CPU spreads over the
// cores as a fleet's spreads over its hosts; s3rver and the deployer each run in a child started
// from this same file (--serve-s3, --deployer), so that neither's CPU or memory is counted in
// the other figures, and the deployer's RSS is its own. (moto's server is a Python process.)
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Activator } from "../src/agent/activator.js";
import { Agent } from "../src/agent/agent.js";
import { AgentDelivery } from "../src/delivery/agent.js";
import type { DeliveryEvent, WaveHost } from "../src/delivery/delivery.js";
import { type AgentHost, RELEASE_DEFAULTS } from "../src/fleet/fleet.js";
import { makeEd25519Key } from "../src/lab/ssh-keygen.js";
import {
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  type PublicKey,
  parseSecretKey,
  publicKeyOf,
} from "../src/nix/keys.js";
import { parseShard } from "../src/release/release-shard.js";
import { verifyReleaseHead } from "../src/release/release-sign.js";
import { readChannel } from "../src/release/release-store.js";
import { readShardBytes } from "../src/release/shard-store.js";
import { DEFAULT_HEARTBEAT_EVERY } from "../src/status/heartbeat.js";
import { formatStatusRecord, progressKey, type StatusRecord } from "../src/status/status.js";
import { readProgress } from "../src/status/status-store.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { mapLimit } from "../src/util/pool.js";
import { type MotoServer, startMotoServer } from "../support/moto-server.js";
import { S3RVER_CREDENTIALS, startS3Server } from "../support/s3-server.js";
import { AgentProcs, type ProcSample } from "./agent-procs.js";
import {
  CHANNEL,
  counting,
  countOps,
  formatCounts,
  hostNames,
  JITTER,
  mergeWindowParts,
  NOOP_ACTIVATOR,
  now,
  sum,
  systemPath,
  type Tally,
} from "./agents-tally.js";
import { mb, table } from "./stats.js";

const SELF = fileURLToPath(import.meta.url);
const BUCKET = "nixship-bench";
/** The deployer's status reads, as `nixship deploy` does them. */
const DEPLOYER_POLL_MS = 1000;
const RSS_SAMPLE_MS = 50;
/** Marker PUTs in flight while seeding the readProgress-alone listings. */
const SEED_CONCURRENCY = 32;
/** Agents per shared S3 client by default: the SDK's pool holds 50 sockets per client. */
const AGENTS_PER_CLIENT = 50;
/** How the parent hands the deployer child its settings. */
const DEPLOYER_ENV = "NIXSHIP_BENCH_DEPLOYER";

/** A command to the agent processes: ordinary ones, and those that wait on every agent. */
const ASK_MS = 60_000;
const STOP_MS = 300_000;

interface Phase {
  readonly name: string;
  readonly start: number;
  end: number;
  /** The agent processes' peak RSS in the phase, each its own, summed. */
  peakRss: number;
  /** The agent processes' CPU (user + system microseconds) when it began, summed. */
  readonly cpu: number;
  cpuSeconds: number;
  readonly s3Cpu: number;
  s3CpuSeconds: number;
  /** How late the agent processes' event loops ran timers: the worst of them. */
  loopMaxMs: number;
  loopP99Ms: number;
  /** The agent processes' heaps after a full collection at its end, summed. */
  heapUsedAtEnd: number;
}

interface DeployerSettings {
  readonly storeUrl: string;
  readonly hosts: number;
  readonly offlineTimeout: number;
  readonly secretKey: string;
  /** The agents' host key (`ssh-ed25519 BASE64`) when reports are signed. */
  readonly reportKey?: string;
}

/** What the deployer child reports, times on the shared clock. */
interface DeployerResult {
  readonly startedAt: number;
  readonly publishedAt: number;
  readonly lastDoneAt: number;
  readonly returnedAt: number;
  readonly activated: number;
  readonly failed: number;
  readonly firstFailure: string | null;
  readonly seq: number;
  readonly manifestBytes: number;
  /** The release's shards (0: one file) and the bytes of the largest. */
  readonly shards: number;
  readonly shardBytes: number;
  readonly publishOps: string;
  readonly polls: readonly { readonly lists: number; readonly gets: number }[];
  /** GETs of success records, for the outcomes' generation and previous system. */
  readonly detailGets: number;
  readonly totalOps: string;
  readonly rssBefore: number;
  readonly rssPeak: number;
  readonly maxRss: number;
  readonly cpuSeconds: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      agents: { type: "string", default: "1000" },
      interval: { type: "string", default: "10" },
      idle: { type: "string", default: "30" },
      // S3 clients the agents share, in all (default: one per AGENTS_PER_CLIENT agents), split over
      // the agent processes.
      clients: { type: "string" },
      // Processes the agents run in, each with its share (default: one per CPU).
      "agent-procs": { type: "string" },
      // Where the releases and status live: s3rver on loopback (s3), moto's S3 server on loopback
      // (moto), or a directory (dir), which leaves the machine's two cores to the agents and the
      // deployer.
      store: { type: "string", default: "s3" },
      // Agents sign their reports with a host key, and the deployer requires and verifies them
      // (releases.signedReports): one key for every agent, its cost is what counts here.
      "signed-reports": { type: "boolean", default: false },
      // Internal: the child modes this file runs in (the parent starts them).
      "serve-s3": { type: "boolean", default: false },
      deployer: { type: "boolean", default: false },
    },
  });
  if (values["serve-s3"]) return serveS3();
  if (values.deployer) return runDeployer();
  const n = Math.min(20_000, Math.max(1, Math.floor(Number(values.agents) || 1000)));
  const interval = Math.min(300, Math.max(1, Number(values.interval) || 10));
  const idle = Math.min(600, Math.max(5, Number(values.idle) || 30));
  const clients = Math.min(
    n,
    Math.max(1, Math.floor(Number(values.clients) || Math.ceil(n / AGENTS_PER_CLIENT))),
  );
  const procs = Math.min(
    64,
    n,
    Math.max(1, Math.floor(Number(values["agent-procs"]) || availableParallelism())),
  );
  const perProc = Math.max(1, Math.round(clients / procs));
  const kind = values.store;
  if (kind !== "s3" && kind !== "moto" && kind !== "dir") {
    throw new Error(
      `--store: ${kind} (s3: s3rver on loopback; moto: moto's S3 server on loopback; dir: a directory store)`,
    );
  }
  const signed = values["signed-reports"] === true;
  await runBenchmark({ n, interval, idle, clients: perProc, procs, kind, signed });
}

interface Settings {
  readonly n: number;
  readonly interval: number;
  readonly idle: number;
  /** Store clients each agent process's agents share. */
  readonly clients: number;
  /** Agent processes. */
  readonly procs: number;
  readonly kind: StoreKind;
  /** Agents sign their reports; the deployer requires them signed. */
  readonly signed: boolean;
}

/** Child mode: s3rver on 127.0.0.1, its own temp dir, silent; stops when stdin closes. */
async function serveS3(): Promise<void> {
  const server = await startS3Server(BUCKET);
  process.stdout.write(`${JSON.stringify({ endpoint: server.endpoint })}\n`);
  await new Promise<void>((resolve) => {
    process.stdin.once("end", resolve).once("close", resolve).resume();
    process.once("SIGINT", resolve).once("SIGTERM", resolve);
  });
  await server.close();
  process.exit(0);
}

/** Child mode: one AgentDelivery.deployWave of every host; prints a DeployerResult line. */
async function runDeployer(): Promise<void> {
  const settings = JSON.parse(process.env[DEPLOYER_ENV] ?? "{}") as DeployerSettings;
  useS3rverCredentials();
  const store = await openStore(settings.storeUrl);
  // Load the SDK's request path first, so the RSS before the deploy includes it.
  await store.list("status/");
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, RSS_SAMPLE_MS);
  const cpu = process.cpuUsage();

  const key = parseSecretKey(settings.secretKey);
  const wave: WaveHost[] = hostNames(settings.hosts).map((name) => ({
    host: {
      name,
      tags: [],
      address: undefined,
      system: { kind: "store-path", path: systemPath(name) },
      delivery: "agent",
    } satisfies AgentHost,
    request: {
      path: systemPath(name),
      action: "switch",
      substituters: [],
      trustedKeys: [],
      commandChecks: [],
      httpChecks: [],
      confirmTimeout: 0,
      activationTimeout: 600,
    },
  }));
  const tally: Tally = { requests: [], successAt: undefined };
  const polls: { lists: number; requestsBefore: number }[] = [];
  const delivery = new AgentDelivery({
    store: counting(store, tally),
    releases: {
      channel: CHANNEL,
      publicKeys: [formatPublicKey(publicKeyOf(key))],
      offlineTimeout: settings.offlineTimeout,
      maxAge: RELEASE_DEFAULTS.maxAge,
      signedReports: false,
    },
    key,
    ...(settings.reportKey === undefined
      ? {}
      : {
          reportKeys: new Map(
            hostNames(settings.hosts).map((h) => [h, settings.reportKey as string]),
          ),
        }),
    health: { http: [], commands: [] },
    confirmTimeout: 0,
    pollInterval: DEPLOYER_POLL_MS,
    onPoll: (lists) => polls.push({ lists, requestsBefore: tally.requests.length }),
  });
  let publishedAt = Number.NaN;
  let publishRequests = 0;
  let lastDoneAt = Number.NaN;
  const startedAt = now();
  const outcomes = await delivery.deployWave(
    wave,
    (e: DeliveryEvent) => {
      // The wave's hosts are told "connect" right after the release is published.
      if (e.type === "phase" && Number.isNaN(publishedAt)) {
        publishedAt = now();
        publishRequests = tally.requests.length;
      }
      if (e.type === "done") lastDoneAt = now();
    },
    { index: 0, kind: "main", parallel: settings.hosts, failureBudget: 0 },
  );
  const returnedAt = now();
  clearInterval(sampler);
  const used = process.cpuUsage(cpu);
  const failures = outcomes.flatMap((o) => (o.status === "failed" ? [o.message] : []));
  const release = delivery.published[0];
  const result: DeployerResult = {
    startedAt,
    publishedAt,
    lastDoneAt,
    returnedAt,
    activated: outcomes.filter((o) => o.status === "activated").length,
    failed: failures.length,
    firstFailure: failures[0] ?? null,
    seq: release?.release.seq ?? 0,
    manifestBytes: release?.bytes.length ?? 0,
    shards: release?.shards?.length ?? 0,
    shardBytes: Math.max(0, ...(release?.shards ?? []).map((s) => s.bytes.length)),
    publishOps: countOps(tally.requests.slice(0, publishRequests)),
    // GETs between one poll's LIST and the next: the marker bodies read for what it found.
    polls: polls.map((p, i) => {
      const next = polls[i + 1]?.requestsBefore ?? tally.requests.length;
      const mine = tally.requests.slice(p.requestsBefore, next);
      return { lists: p.lists, gets: mine.filter((r) => r.op === "get" && !r.detail).length };
    }),
    detailGets: tally.requests.filter((r) => r.op === "get" && r.detail).length,
    totalOps: countOps(tally.requests),
    rssBefore,
    rssPeak: Math.max(rssPeak, process.memoryUsage().rss),
    // ru_maxrss, in kB on Linux.
    maxRss: process.resourceUsage().maxRSS * 1024,
    cpuSeconds: (used.user + used.system) / 1e6,
  };
  await store.close();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function runBenchmark(settings: Settings): Promise<void> {
  const { n, interval, idle, clients, procs, kind } = settings;
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-agents-"));
  const children = new Set<ChildProcess>();
  let s3: ChildProcess | undefined;
  let moto: MotoServer | undefined;
  let agentProcs: AgentProcs | undefined;
  const serverPid = (): number | undefined => s3?.pid ?? moto?.pid;
  const cleanUp = (): void => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
    agentProcs?.kill();
    rmSync(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    cleanUp();
    process.exit(130);
  });
  // Everything below stops by itself; this only guards against a hang.
  const budget = (interval * 5 + idle * 2 + 300) * 1000;
  const watchdog = setTimeout(() => {
    console.error(`\nstopped: the benchmark ran over ${budget / 1000} s`);
    cleanUp();
    process.exit(1);
  }, budget);

  const phases: Phase[] = [];
  let current: Phase | undefined;
  /** Every agent process's sample (each resets its peak RSS and loop delay). */
  const sample = async (gc: boolean): Promise<ProcSample[]> =>
    agentProcs === undefined ? [] : agentProcs.all({ cmd: "sample", gc }, ASK_MS);
  const begin = async (name: string): Promise<void> => {
    const samples = await end();
    const phase: Phase = {
      name,
      start: now(),
      end: Number.NaN,
      peakRss: sum(samples.map((s) => s.rss)),
      cpu: sum(samples.map((s) => s.cpu)),
      cpuSeconds: 0,
      s3Cpu: cpuSecondsOf(serverPid()),
      s3CpuSeconds: 0,
      loopMaxMs: 0,
      loopP99Ms: 0,
      heapUsedAtEnd: 0,
    };
    current = phase;
    phases.push(phase);
  };
  async function end(): Promise<ProcSample[]> {
    const phase = current;
    current = undefined;
    const samples = await sample(phase !== undefined);
    if (phase === undefined) return samples;
    phase.end = now();
    phase.cpuSeconds = (sum(samples.map((s) => s.cpu)) - phase.cpu) / 1e6;
    phase.s3CpuSeconds = cpuSecondsOf(serverPid()) - phase.s3Cpu;
    phase.peakRss = Math.max(phase.peakRss, sum(samples.map((s) => s.peakRss)));
    phase.loopMaxMs = Math.max(0, ...samples.map((s) => s.loopMax));
    phase.loopP99Ms = Math.max(0, ...samples.map((s) => s.loopP99));
    phase.heapUsedAtEnd = sum(samples.map((s) => s.heap));
    return samples;
  }

  try {
    console.log(
      `nixship agents benchmark: ${n} agents in ${procs} process${procs === 1 ? "" : "es"}, ` +
        `poll interval ${interval} s ± ${JITTER * 100}%, idle windows ${idle} s\n` +
        `node ${process.version}, ${availableParallelism()} CPUs, ${loadAverage()}`,
    );
    let url: string;
    if (kind === "s3") {
      const started = await startS3Child(work);
      s3 = started.child;
      children.add(s3);
      useS3rverCredentials();
      url = s3Url(started.endpoint);
    } else if (kind === "moto") {
      // On threads, as moto_server serves: this bench has one publisher, so moto's unlocked
      // conditional writes (the tests' reason for one thread) cannot race here.
      moto = await startMotoServer(BUCKET, { threaded: true });
      useS3rverCredentials();
      url = s3Url(moto.endpoint);
    } else {
      url = join(work, "store");
      await mkdir(url);
    }
    const benchStore = await openStore(url);
    const key = generateSecretKey("bench-release-1");
    const releaseKeys = [publicKeyOf(key)];
    const hosts = hostNames(n);
    printDesign(settings, url);
    // One host key for every agent when reports are signed: what is measured is the signing and
    // the verifying, which cost the same whatever the key.
    const hostKeyFile = join(work, "host-key");
    if (settings.signed) await makeEd25519Key(hostKeyFile, "bench", "make the agents' host key");
    const reportKey = settings.signed
      ? (await readFile(`${hostKeyFile}.pub`, "utf8")).split(" ").slice(0, 2).join(" ")
      : undefined;
    // Each process opens its share of the clients and loads the store's request path (the AWS
    // SDK's on S3) before the baseline is sampled.
    agentProcs = await AgentProcs.start(
      procs,
      n,
      {
        storeUrl: url,
        releaseKey: formatPublicKey(releaseKeys[0] as PublicKey),
        interval,
        clients,
        work,
        ...(settings.signed ? { signingKeyFile: hostKeyFile } : {}),
      },
      ASK_MS + n * 10,
    );
    const baseline = await sample(true);
    const rssBaseline = sum(baseline.map((s) => s.rss));
    const baseHeap = sum(baseline.map((s) => s.heap));

    // ---- 1. Agents start, spread over one interval ---------------------------------------------
    await begin("agents starting");
    const agentsStarted = now();
    await agentProcs.all({ cmd: "start" }, ASK_MS);
    await sleep(interval * 1000 + 1000);
    const polled = sum((await agentProcs.all({ cmd: "polled" }, ASK_MS)).map((p) => p.polled));
    console.log(
      `\n1. ${n} agents started at random moments of ${interval} s (${polled} have polled since)`,
    );

    // ---- 2. Idle, no release -------------------------------------------------------------------
    await begin("idle, no release");
    const idleA = await idleWindow(agentProcs, n, idle, interval);
    console.log(`\n2. Idle, no release yet (${idle} s window)`);
    console.log(formatIdle(idleA, interval));

    // ---- 3. Deploy -----------------------------------------------------------------------------
    await begin("deploy");
    const deployer = await runDeployerChild(
      {
        storeUrl: url,
        hosts: n,
        offlineTimeout: interval * 3 + 30,
        secretKey: formatSecretKey(key),
        ...(reportKey === undefined ? {} : { reportKey }),
      },
      children,
    );
    await end();
    const deployPhase = phases.at(-1);
    const since = (t: number | null) =>
      t === null ? Number.NaN : (t - deployer.publishedAt) / 1000;
    const times = await agentProcs.all({ cmd: "deploy" }, ASK_MS);
    const successAt = times.flatMap((t) => t.success);
    // Seconds from publish until each agent wrote its success marker.
    const reports = successAt.map(since).sort(ascending);
    const converged = reports.filter(Number.isFinite).length;
    const allReported = reports.at(-1) ?? Number.NaN;
    // When each agent's poll that found the release started, and how long it took from there.
    const found = times
      .flatMap((t) => t.found)
      .map((at, i) => ({ at: since(at), took: since(successAt[i] ?? null) - since(at) }));
    const foundAt = found.map((f) => f.at).sort(ascending);
    const took = found.map((f) => f.took).sort(ascending);
    const channel = await readChannel(benchStore, CHANNEL);
    const verifyMs =
      channel.status === "found"
        ? await timeVerify(benchStore, channel.bytes, releaseKeys)
        : Number.NaN;
    const { polls } = deployer;
    const busy =
      (deployPhase?.cpuSeconds ?? Number.NaN) /
      (((deployPhase?.end ?? Number.NaN) - (deployPhase?.start ?? Number.NaN)) / 1000);
    console.log(`\n3. Deploy: one release naming all ${n} hosts (AgentDelivery.deployWave)`);
    console.log(
      [
        `  release ${deployer.seq}: ${(deployer.manifestBytes / 1e3).toFixed(1)} kB release file, one distinct store path per host` +
          (deployer.shards > 0
            ? ` (sharded: the head; ${deployer.shards} shards of at most ${(deployer.shardBytes / 1e3).toFixed(1)} kB)`
            : ""),
        `  publishing took ${secs((deployer.publishedAt - deployer.startedAt) / 1000)} s: ${deployer.publishOps}`,
        "  agents reporting success (success marker written), seconds after publish:",
        `    first ${secs(reports[0] ?? Number.NaN)}, median ${secs(quantile(reports, 0.5))}, ` +
          `p90 ${secs(quantile(reports, 0.9))}, all ${converged}/${n}: ${secs(allReported)}`,
        `  the poll that found the release started: median ${secs(quantile(foundAt, 0.5))} s, ` +
          `max ${secs(foundAt.at(-1) ?? Number.NaN)} s after publish (polls are at most ` +
          `${secs(interval * (1 + JITTER))} s apart)`,
        `  from that poll to the success marker: median ${secs(quantile(took, 0.5))} s, ` +
          `p90 ${secs(quantile(took, 0.9))} s, max ${secs(took.at(-1) ?? Number.NaN)} s`,
        `  agents' CPU in this phase, summed over the ${procs} agent process${procs === 1 ? "" : "es"}: ` +
          `${deployPhase?.cpuSeconds.toFixed(1) ?? "?"} s ` +
          `(${((1000 * (deployPhase?.cpuSeconds ?? Number.NaN)) / n).toFixed(1)} ms per agent, ` +
          `${busy.toFixed(2)} CPU-seconds per second of the phase on ${availableParallelism()} CPUs); ` +
          `one check of this release (its head's signature, and one shard when sharded): ${verifyMs.toFixed(1)} ms`,
        // Said when the agents waited for CPU: over a second from their poll to their success.
        ...(quantile(took, 0.5) > 1
          ? [
              `  (the agent processes were busy (${busy.toFixed(2)} CPU-s a second): past its poll, an agent's time here is mostly spent`,
              "  waiting behind the other agents of its process; on its own host it would have only",
              "  its own work: one GET, the head's signature, its own shard's GET and check when the",
              "  release is sharded, with no state yet a GET of the next release, 2 state saves",
              "  and 2 status PUTs)",
            ]
          : []),
        `  deployer: saw the last host at ${secs(since(deployer.lastDoneAt))} s; deployWave returned at ` +
          `${secs(since(deployer.returnedAt))} s: ${deployer.activated} activated, ${deployer.failed} failed` +
          (deployer.firstFailure ? ` (first: ${deployer.firstFailure})` : ""),
        `  deployer polls (every ${DEPLOYER_POLL_MS} ms): ${polls.length}; all its requests: ${deployer.totalOps}`,
        `    LIST per poll: ${polls.map((p) => p.lists).join(" ")}`,
        `    GET per poll:  ${polls.map((p) => p.gets).join(" ")}`,
        `    GETs of success records (each outcome's generation and previous system, once per host): ${deployer.detailGets}`,
        "    (a poll's GETs are those between its LIST and the next poll's: the marker bodies it",
        "    read for the hosts it found finished)",
        `  deployer process: RSS ${mb(deployer.rssBefore)} before the deploy (node + AWS SDK), ` +
          `peak ${mb(deployer.rssPeak)} sampled, ru_maxrss ${mb(deployer.maxRss)}; CPU ${deployer.cpuSeconds.toFixed(1)} s`,
      ].join("\n"),
    );

    // ---- 4. Idle, release applied ----------------------------------------------------------------
    await begin("idle, release applied");
    const idleB = await idleWindow(agentProcs, n, idle, interval);
    console.log(`\n4. Idle, release applied (${idle} s window)`);
    console.log(formatIdle(idleB, interval));
    // Includes this benchmark's own record of every request (about 15 small objects per agent).
    const idleHeap = sum((await end()).map((s) => s.heap));

    // ---- 5. Agents stop; the deployer's status read alone -------------------------------------
    await agentProcs.all({ cmd: "stop" }, STOP_MS);
    await begin("seeding markers");
    const sizes = [...new Set([100, 1000, n])].sort(ascending);
    const seqOf = (size: number) => (size === n ? deployer.seq : 100_000 + size);
    for (const size of sizes) {
      if (size !== n) await seedMarkers(benchStore, seqOf(size), size);
    }
    await begin("readProgress alone");
    const rows: string[][] = [["markers of", "hosts", "marker objects", "LIST calls", "ms"]];
    const progress: { hosts: number; markers: number; lists: number }[] = [];
    for (const size of sizes) {
      const seq = seqOf(size);
      const t = now();
      const read = await readProgress(benchStore, CHANNEL, seq);
      const ms = now() - t;
      const markers = await countMarkers(benchStore, seq);
      progress.push({ hosts: read.hosts.size, markers, lists: read.listCalls });
      rows.push([
        size === n
          ? `release ${seq}, written by the agents`
          : "seeded: applying + success per host",
        String(read.hosts.size),
        String(markers),
        String(read.listCalls),
        ms.toFixed(0),
      ]);
    }
    await end();
    console.log("\n5. The deployer's status read (readProgress) alone, agents stopped");
    console.log(indent(table(rows, 1), 2));

    // ---- 6. Memory and CPU ---------------------------------------------------------------------
    console.log(
      `\n6. The ${procs} agent process${procs === 1 ? "" : "es"} (all ${n} agents)` +
        `${kind === "dir" ? "" : ` and ${serverName(kind)}`}, per phase (the readProgress rows:` +
        " the agents stopped, this process reads)",
    );
    console.log(
      indent(
        table(
          [
            [
              "phase",
              "seconds",
              "peak RSS, summed",
              "heap after GC at end, summed",
              "CPU s, summed",
              `${kind === "dir" ? "server" : serverName(kind)} CPU s`,
              "loop delay p99/max ms, worst",
            ],
            ...phases.map((p) => [
              p.name,
              secs((p.end - p.start) / 1000),
              mb(p.peakRss),
              mb(p.heapUsedAtEnd),
              p.cpuSeconds.toFixed(1),
              Number.isFinite(p.s3CpuSeconds) ? p.s3CpuSeconds.toFixed(1) : "n/a",
              `${p.loopP99Ms.toFixed(0)}/${p.loopMaxMs.toFixed(0)}`,
            ]),
          ],
          1,
        ),
        2,
      ),
    );
    const totals = await agentProcs.all({ cmd: "totals" }, ASK_MS);
    console.log(
      [
        `  Each column sums the ${procs} agent processes (${Math.ceil(n / procs)} agents each at most): peak RSS is the sum of`,
        "  each process's own peak in the phase (an upper bound of their RSS at any one time); the loop",
        "  delay is the worst process's.",
        `  RSS of the agent processes before the agents started: ${mb(rssBaseline)} (node, the store's request path,`,
        `  ${clients} client${clients === 1 ? "" : "s"} and ${mb(rssBaseline / procs)} a process).`,
        `  Heap after GC, ${n} agents idle after the deploy: ${mb(idleHeap)} (${((idleHeap - baseHeap) / n / 1e3).toFixed(1)} kB per agent over the ${mb(baseHeap)} before they started).`,
        "  Loop delay: how late an agent process's event loop ran its timers (its agents share it).",
        `  ${loadAverage()}: other work on the machine competes for the same ${availableParallelism()} CPUs.`,
        `  agent store errors ${sum(totals.map((t) => t.storeErrors))}, refusals ` +
          `${sum(totals.map((t) => t.rejected))}, failed activations ${sum(totals.map((t) => t.failed))}` +
          (totals.some((t) => t.trouble !== null)
            ? ` (e.g. ${totals.find((t) => t.trouble !== null)?.trouble})`
            : ""),
      ].join("\n"),
    );

    // ---- 7. One agent's apply alone -------------------------------------------------------------
    // Fresh agents (no state) of hosts the release names, one after another, with the others
    // stopped: the CPU one host spends to take this release (its poll, the head's signature,
    // its own shard when sharded, the next release's GET, state saves and status PUTs).
    const apply = await timeApplies(
      url,
      work,
      hosts,
      releaseKeys,
      interval,
      NOOP_ACTIVATOR,
      settings.signed ? hostKeyFile : undefined,
    );
    const applyCpu = apply.map((a) => a.cpu);
    console.log(
      `\n7. One agent's apply alone (${apply.length} fresh agents, one at a time in this process, the others stopped):` +
        `\n  CPU per apply: median ${ms(median(applyCpu))} ms, range ${ms(Math.min(...applyCpu))}-` +
        `${ms(Math.max(...applyCpu))} ms; wall median ${ms(median(apply.map((a) => a.wall)))} ms; ` +
        `outcome ${apply[0]?.outcome ?? "?"}; ${n} such applies: ${(n * median(applyCpu)).toFixed(1)} CPU-s` +
        ` (the agents' CPU in the deploy phase above: ${deployPhase?.cpuSeconds.toFixed(1) ?? "?"} s)` +
        (apply.some((a) => a.outcome !== "applied")
          ? "\n  (not what a host pays for this release: an agent that took nothing read a channel the" +
            "\n  deployer moved on, e.g. the rollback naming no host it publishes for a wave that failed)"
          : ""),
    );

    // ---- Targets -------------------------------------------------------------------------------
    const convergeTarget = interval + 5;
    const pages = (markers: number) => Math.max(1, Math.ceil(markers / 1000));
    const deployMarkers = progress.find((p) => p.hosts === n)?.markers ?? 2 * n;
    const maxPerPoll = Math.max(0, ...polls.map((p) => p.lists + p.gets));
    const maxGets = Math.max(0, ...polls.map((p) => p.gets));
    // Over the whole run: the idle windows may be shorter than one heartbeat period.
    const runSeconds = (now() - agentsStarted) / 1000;
    const allBeats = totals.flatMap((t) => t.beats);
    const beatsPerInterval = sum(allBeats) / n / (runSeconds / interval);
    // The first poll's heartbeat, then one per heartbeatEvery polls at the shortest wait.
    const beatsBound =
      1 + Math.ceil(runSeconds / (DEFAULT_HEARTBEAT_EVERY * interval * (1 - JITTER)));
    console.log(
      `\nHeartbeats over the whole run (${secs(runSeconds)} s): ${sum(allBeats)} PUTs, ` +
        `${beatsPerInterval.toFixed(3)} per agent per interval, ${Math.min(...allBeats)} to ` +
        `${Math.max(...allBeats)} per agent`,
    );
    const targets: [boolean, string, string][] = [
      [
        converged === n && allReported <= convergeTarget,
        `all ${n} agents report success within poll interval + 5 s (${convergeTarget} s)`,
        `${converged}/${n} in ${secs(allReported)} s`,
      ],
      [
        idleB.getsPerInterval <= 1.01 &&
          idleB.conditionalShare === 1 &&
          idleB.shortestGap >= interval * (1 - JITTER) - 0.1,
        "idle: at most 1 conditional GET per agent per interval",
        `${idleB.getsPerInterval.toFixed(3)} per interval, ${pct(idleB.conditionalShare)} ` +
          `conditional, shortest gap ${secs(idleB.shortestGap)} s`,
      ],
      [
        progress.every((p) => p.lists <= pages(p.markers)),
        "deployer LIST calls per poll grow with hosts/1000",
        progress.map((p) => `${p.hosts} hosts: ${p.lists}`).join(", "),
      ],
      [
        maxPerPoll <= pages(deployMarkers),
        "deployer requests (LIST + GET) per poll grow with hosts/1000, not hosts",
        `max ${maxPerPoll} in one poll (${maxGets} GETs); ${pages(deployMarkers)} LIST pages`,
      ],
      [
        deployer.detailGets <= n,
        "deployer reads each success record once (outcomes' generation, previous)",
        `${deployer.detailGets} GETs for ${n} hosts`,
      ],
      [
        idleB.heartbeatsMax <=
          Math.ceil(idle / (DEFAULT_HEARTBEAT_EVERY * interval * (1 - JITTER))) &&
          idleB.heartbeatsPerInterval <= 1.25 / DEFAULT_HEARTBEAT_EVERY,
        `idle: a heartbeat PUT per agent every ${DEFAULT_HEARTBEAT_EVERY} polls at most`,
        `${idleB.heartbeatsPerInterval.toFixed(3)} per agent per interval, at most ${idleB.heartbeatsMax} ` +
          `from one agent in ${idle} s`,
      ],
      [
        Math.min(...allBeats) >= 1 && Math.max(...allBeats) <= beatsBound,
        `every agent beats, at most 1 + one per ${DEFAULT_HEARTBEAT_EVERY} polls over the run`,
        `${Math.min(...allBeats)} to ${Math.max(...allBeats)} per agent (bound ${beatsBound})`,
      ],
    ];
    console.log("\nTargets (printed, not asserted):");
    for (const [ok, what, got] of targets) {
      console.log(`  ${ok ? "PASS" : "MISS"}  ${what.padEnd(74)} ${got}`);
    }
    console.log(
      [
        "  idle: GETs per interval = the window's GETs / (agents × window / interval) (the waits",
        "  are drawn at random, so 1% is allowed); and no agent may poll twice within",
        "  interval × (1 - jitter), and every idle GET must be conditional. (The mean time between",
        "  two GETs seen inside one window is printed too, but it counts only gaps that fit in the",
        "  window, so it reads short when the window is not many intervals long.)",
        ...(targets[0]?.[0] === false
          ? [
              `  convergence: the agents' own work in the deploy phase took ${deployPhase?.cpuSeconds.toFixed(1) ?? "?"} CPU-seconds in`,
              `  ${procs} process${procs === 1 ? "" : "es"} and the deployer's ${deployer.cpuSeconds.toFixed(1)} (load ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} CPUs), against a budget of`,
              `  ${convergeTarget} s of wall time: where that is more than the CPUs give in ${convergeTarget} s, this measures`,
              "  the machine more than the protocol.",
            ]
          : []),
      ].join("\n"),
    );

    await benchStore.close();
  } finally {
    clearTimeout(watchdog);
    await agentProcs?.close(30_000);
    await stopS3Child(s3);
    await moto?.close();
    cleanUp();
  }
}

function printDesign(settings: Settings, url: string): void {
  const { n, interval, idle, clients, procs, kind } = settings;
  const store =
    kind === "s3"
      ? [
          `Design: s3rver 3.7.1 (silent, its own temp dir) on ${url}, in a child process;`,
          "  conditional GET/PUT answered as real S3 does (the test suite's s3rver shim).",
        ]
      : kind === "moto"
        ? [
            `Design: moto's S3 server (in memory, on threads as moto_server serves) on ${url},`,
            "  a Python child process; conditional GET/PUT answered by moto itself.",
          ]
        : [
            `Design: a directory store (${url}; files written and fsynced, conditional reads by`,
            "  etag, as `file://` caches are), so no server shares the machine's cores.",
          ];
  console.log(
    [
      "",
      ...store,
      `  ${n} Agents (src/agent/agent.ts) run in ${procs} child process${procs === 1 ? "" : "es"} of ${Math.ceil(n / procs)} agents at most`,
      "  (`--agent-procs`, default one per CPU), so that their CPU spreads over the machine's cores as",
      "  a fleet's spreads over its hosts; their CPU and memory are summed over those processes.",
      "  Each agent has its own state directory (state file written and fsynced as in production)",
      '  and a no-op Activator: apply resolves {status:"activated", generation:1} at once and',
      "  inspect reports nothing, so every agent goes the whole apply path (state saves, applying +",
      "  success status) but runs no Nix.",
      `  The agents of a process share its ${clients} store${clients === 1 ? "" : "s"} (agent i uses store i mod ${clients})` +
        (kind !== "dir" ? ", each one S3Client with the SDK's" : "."),
      ...(kind !== "dir"
        ? [
            "  keep-alive pool of at most 50 sockets: one client per agent would measure that many SDK",
            "  instances rather than the protocol, and one client for all would queue the agents behind",
            "  50 sockets, which real hosts do not share.",
          ]
        : []),
      "  Each agent's calls go through its own counting wrapper, so requests are counted per agent.",
      settings.signed
        ? "  --signed-reports: every agent signs its reports with one ed25519 host key, and the deployer requires and verifies them (releases.signedReports)."
        : "  Reports are not signed (a fleet without releases.signedReports; --signed-reports measures them).",
      `  Each agent starts at a random moment of the first ${interval} s, then polls every`,
      `  ${interval} s ± ${JITTER * 100}% (drawn per wait), as \`nixship agent\` does.`,
      "  This process only coordinates: it starts them, asks them for their figures, and runs the",
      "  deployer's status read alone (5) and one agent's apply alone (7) once the agents stopped.",
      "  The deployer (AgentDelivery.deployWave: one wave of all hosts, status read every",
      `  ${DEPLOYER_POLL_MS} ms) runs in a child process with its own store, counted the same way,`,
      "  so its RSS and CPU are its own.",
      `  Phases: idle without a release (${idle} s), deploy, idle with the release applied (${idle} s),`,
      `  then the deployer's readProgress alone on 100, 1000 and ${n} hosts' markers.`,
    ].join("\n"),
  );
}

interface IdleStats {
  readonly agents: number;
  readonly requests: number;
  readonly perMinuteMean: number;
  readonly perMinuteMax: number;
  readonly perMinuteMin: number;
  /** GETs per agent per interval: the window's GETs over agents × window / interval. */
  readonly getsPerInterval: number;
  readonly gets: number;
  readonly conditionalShare: number;
  readonly results: string;
  readonly otherOps: string;
  /** Heartbeat PUTs: in all, per agent per interval (mean), and the most one agent made. */
  readonly heartbeats: number;
  readonly heartbeatsPerInterval: number;
  readonly heartbeatsMax: number;
  /** The shortest and mean time between two consecutive GETs of one agent (s). */
  readonly shortestGap: number;
  readonly meanGap: number;
}

/** Counts every agent's requests started in the next `seconds`, over all the agent processes. */
async function idleWindow(
  procs: AgentProcs,
  n: number,
  seconds: number,
  interval: number,
): Promise<IdleStats> {
  const from = now();
  await sleep(seconds * 1000);
  const to = now();
  const w = mergeWindowParts(await procs.all({ cmd: "window", from, to }, ASK_MS));
  const minutes = (to - from) / 60_000;
  const requests = sum(w.counts);
  const intervals = (to - from) / 1000 / interval;
  return {
    agents: n,
    requests,
    perMinuteMean: requests / Math.max(1, n) / minutes,
    perMinuteMax: Math.max(0, ...w.counts) / minutes,
    perMinuteMin: Math.min(...w.counts) / minutes,
    getsPerInterval: w.gets / Math.max(1, n) / intervals,
    gets: w.gets,
    conditionalShare: w.conditional / Math.max(1, w.gets),
    results: formatCounts(w.results),
    otherOps: formatCounts(w.other) || "none",
    heartbeats: w.heartbeats,
    heartbeatsPerInterval: w.heartbeats / Math.max(1, n) / intervals,
    heartbeatsMax: w.heartbeatsMax,
    shortestGap: w.gapMin ?? Number.NaN,
    meanGap: w.gapCount > 0 ? w.gapSum / w.gapCount : Number.NaN,
  };
}

function formatIdle(s: IdleStats, interval: number): string {
  return [
    `  requests per agent per minute: mean ${s.perMinuteMean.toFixed(2)}, min ${s.perMinuteMin.toFixed(2)}, ` +
      `max ${s.perMinuteMax.toFixed(2)} (one poll per ${interval} s is ${(60 / interval).toFixed(2)})`,
    `  GETs per agent per interval: ${s.getsPerInterval.toFixed(3)} (the window's GETs over agents × window / interval)`,
    `  time between two GETs of one agent inside the window: mean ${secs(s.meanGap)} s (only gaps` +
      ` that fit in the window: short when it is not many intervals long), shortest ${secs(s.shortestGap)} s`,
    `  ${s.requests} requests from ${s.agents} agents: ${s.gets} GETs of the channel, ` +
      `${pct(s.conditionalShare)} conditional (If-None-Match); answers: ${s.results || "none"}; ` +
      `other requests: ${s.otherOps}`,
    `  heartbeats: ${s.heartbeats} PUTs, ${s.heartbeatsPerInterval.toFixed(3)} per agent per interval ` +
      `(one per ${DEFAULT_HEARTBEAT_EVERY} polls is ${(1 / DEFAULT_HEARTBEAT_EVERY).toFixed(3)}), ` +
      `at most ${s.heartbeatsMax} from one agent`,
  ].join("\n");
}

/**
 * Mean milliseconds of what each agent does with a new release's bytes: the head's signature
 * and, for a sharded release, the check of its own shard (shard 0 here), as readHostEntry does
 * it (the shard's GET left out: it is read once, before the runs).
 */
async function timeVerify(
  store: ObjectStore,
  bytes: Uint8Array,
  keys: readonly PublicKey[],
): Promise<number> {
  const first = verifyReleaseHead(bytes, keys, "bench");
  const own = first.shards.length > 0 ? await readShardBytes(store, first, 0) : undefined;
  const once = () => {
    const head = verifyReleaseHead(bytes, keys, "bench");
    if (own !== undefined) parseShard(own, head, 0, "bench");
  };
  once();
  const runs = 20;
  const t = performance.now();
  for (let i = 0; i < runs; i++) once();
  return (performance.now() - t) / runs;
}

/** CPU and wall seconds of one fresh agent's first poll of the current release, `runs` times. */
async function timeApplies(
  url: string,
  work: string,
  hosts: readonly string[],
  releaseKeys: readonly PublicKey[],
  interval: number,
  activator: Activator,
  signingKeyFile: string | undefined,
  runs = 5,
): Promise<{ cpu: number; wall: number; outcome: string }[]> {
  const store = await openStore(url);
  const out: { cpu: number; wall: number; outcome: string }[] = [];
  try {
    for (let i = 0; i < Math.min(runs, hosts.length); i++) {
      // Spread over the fleet, so that each reads another shard as its own.
      const host = hosts[Math.floor((i * hosts.length) / runs)] as string;
      const stateDir = join(work, "apply-alone", host);
      await mkdir(stateDir, { recursive: true });
      const agent = new Agent({
        store,
        channel: CHANNEL,
        host,
        releaseKeys,
        substituters: [],
        cacheKeys: [],
        stateDir,
        activator,
        pollInterval: interval,
        jitter: JITTER,
        ...(signingKeyFile === undefined ? {} : { signingKeyFile }),
        emit: () => {},
      });
      const cpu = process.cpuUsage();
      const t = now();
      const outcome = await agent.pollOnce();
      const used = process.cpuUsage(cpu);
      out.push({ cpu: (used.user + used.system) / 1e6, wall: (now() - t) / 1000, outcome });
    }
  } finally {
    await store.close();
  }
  return out;
}

function median(values: readonly number[]): number {
  return quantile([...values].sort(ascending), 0.5);
}

function ms(seconds: number): string {
  return (seconds * 1000).toFixed(1);
}

/** Writes the markers `hosts` agents leave on release `seq`: applying, then success. */
async function seedMarkers(store: ObjectStore, seq: number, hosts: number): Promise<void> {
  const at = new Date().toISOString();
  const jobs = Array.from(
    { length: hosts },
    (_, i) => `seed-${String(i + 1).padStart(5, "0")}`,
  ).flatMap((host) => (["applying", "success"] as const).map((state) => ({ host, state })));
  await mapLimit(jobs, SEED_CONCURRENCY, async ({ host, state }) => {
    const record: StatusRecord = {
      version: 1,
      host,
      mode: "agent",
      channel: CHANNEL,
      seq,
      desired: systemPath(host),
      current: state === "success" ? systemPath(host) : null,
      generation: state === "success" ? 1 : null,
      state,
      phase: null,
      error: null,
      rolledBack: null,
      startedAt: at,
      updatedAt: at,
    };
    await store.put(progressKey(CHANNEL, seq, host, state), formatStatusRecord(record), {
      contentType: "application/json",
    });
  });
}

async function countMarkers(store: ObjectStore, seq: number): Promise<number> {
  let count = 0;
  let token: string | undefined;
  do {
    const page = await store.list(
      `status/releases/${CHANNEL}/${seq}/`,
      token === undefined ? {} : { token },
    );
    count += page.objects.length;
    token = page.nextToken;
  } while (token !== undefined);
  return count;
}

type StoreKind = "s3" | "moto" | "dir";

function serverName(kind: "s3" | "moto"): string {
  return kind === "s3" ? "s3rver" : "moto";
}

function s3Url(endpoint: string): string {
  return `s3://${BUCKET}?region=us-east-1&endpoint=${encodeURIComponent(endpoint)}`;
}

/** The SDK's default credential chain reads these; s3rver accepts only S3RVER/S3RVER. */
function useS3rverCredentials(): void {
  process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
}

/** Starts this file in a child mode and resolves with the first line it prints. */
async function startChild(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  children: Set<ChildProcess> | undefined,
): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(process.execPath, [SELF, ...args], {
    env,
    stdio: ["pipe", "pipe", "inherit"],
  });
  children?.add(child);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`${args.join(" ")}: no answer within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    child.once("error", reject);
    // "close": after its output was read, so an answer printed just before exiting counts.
    child.once("close", (code) => {
      clearTimeout(timer);
      reject(new Error(`${args.join(" ")} exited with ${code} before answering`));
    });
    lines.once("line", (text) => {
      clearTimeout(timer);
      resolve(text);
    });
  });
  return { child, line };
}

/** s3rver keeps its objects under `work` (its temp dir is made in TMPDIR). */
async function startS3Child(work: string): Promise<{ child: ChildProcess; endpoint: string }> {
  const env = { ...process.env, TMPDIR: work };
  const { child, line } = await startChild(["--serve-s3"], env, 30_000, undefined);
  return { child, endpoint: (JSON.parse(line) as { endpoint: string }).endpoint };
}

async function runDeployerChild(
  settings: DeployerSettings,
  children: Set<ChildProcess>,
): Promise<DeployerResult> {
  const env = { ...process.env, [DEPLOYER_ENV]: JSON.stringify(settings) };
  // The deployer gives up by itself after offlineTimeout; allow for publishing and start-up.
  const { child, line } = await startChild(
    ["--deployer"],
    env,
    (settings.offlineTimeout + 60) * 1000,
    children,
  );
  child.stdin?.end();
  return JSON.parse(line) as DeployerResult;
}

async function stopS3Child(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.stdin?.end();
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** CPU seconds (user + system) of a process, from /proc/PID/stat; NaN when unreadable. */
function cpuSecondsOf(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime (fields 14 and 15 of stat(5)), in clock ticks of 1/100 s on Linux.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

const ascending = (a: number, b: number): number => a - b;

/** The q-quantile of ascending numbers, ignoring NaN. */
function quantile(ascendingValues: readonly number[], q: number): number {
  const finite = ascendingValues.filter(Number.isFinite);
  return finite[Math.min(finite.length - 1, Math.floor(q * finite.length))] ?? Number.NaN;
}

function secs(n: number): string {
  return Number.isFinite(n) ? n.toFixed(2) : "n/a";
}

function pct(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function indent(text: string, spaces: number): string {
  return text
    .split("\n")
    .map((line) => " ".repeat(spaces) + line)
    .join("\n");
}

function loadAverage(): string {
  return `load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(" ")}`;
}

await main();
