// The agents benchmark (`npm run bench:agents`): 1,000 pull agents in one process against s3rver
// on loopback (or, with `--store moto`, moto's S3 server; with `--store dir`, a directory store,
// which leaves both cores to the agents and the deployer), each with its own state directory and a no-op Activator (this measures the
// control plane, not Nix). It measures the agents' requests while idle, the time from publishing
// one release naming every host until all of them report success, the LIST and GET calls the
// deployer (AgentDelivery) makes per poll, and its peak RSS. Prints figures; asserts nothing.
//
// Three processes: this one runs the agents; s3rver and the deployer each run in a child started
// from this same file (--serve-s3, --deployer), so that neither's CPU or memory is counted in
// the other figures, and the deployer's RSS is its own. (moto's server is a Python process.)
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { Activator } from "../src/agent/activator.js";
import { Agent } from "../src/agent/agent.js";
import { AgentDelivery } from "../src/delivery/agent.js";
import type { DeliveryEvent, WaveHost } from "../src/delivery/delivery.js";
import { type AgentHost, RELEASE_DEFAULTS } from "../src/fleet/fleet.js";
import {
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  type PublicKey,
  parseSecretKey,
  publicKeyOf,
} from "../src/nix/keys.js";
import { NIX32_ALPHABET } from "../src/nix/nix32.js";
import type { StorePath } from "../src/nix/store-path.js";
import { parseShard } from "../src/release/release-shard.js";
import { verifyReleaseHead } from "../src/release/release-sign.js";
import { readChannel } from "../src/release/release-store.js";
import { readShardBytes } from "../src/release/shard-store.js";
import { DEFAULT_HEARTBEAT_EVERY, HEARTBEAT_PREFIX } from "../src/status/heartbeat.js";
import { formatStatusRecord, progressKey, type StatusRecord } from "../src/status/status.js";
import { readProgress } from "../src/status/status-store.js";
import type { GetOptions, ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { mapLimit } from "../src/util/pool.js";
import { type MotoServer, startMotoServer } from "../support/moto-server.js";
import { S3RVER_CREDENTIALS, startS3Server } from "../support/s3-server.js";
import { mb, table } from "./stats.js";

const SELF = fileURLToPath(import.meta.url);
const CHANNEL = "bench";
const BUCKET = "nixship-bench";
/** ± fraction of the poll interval each agent draws per wait (the agent config's default). */
const JITTER = 0.1;
/** The deployer's status reads, as `nixship deploy` does them. */
const DEPLOYER_POLL_MS = 1000;
const RSS_SAMPLE_MS = 50;
/** Marker PUTs in flight while seeding the readProgress-alone listings. */
const SEED_CONCURRENCY = 32;
/** Agents per shared S3 client by default: the SDK's pool holds 50 sockets per client. */
const AGENTS_PER_CLIENT = 50;
/** How the parent hands the deployer child its settings. */
const DEPLOYER_ENV = "NIXSHIP_BENCH_DEPLOYER";

/** Milliseconds on a clock shared by this process and its children. */
const now = (): number => performance.timeOrigin + performance.now();

type Op = "get" | "head" | "put" | "list" | "delete";
interface Req {
  /** now() when the call started. */
  readonly t: number;
  readonly op: Op;
  readonly conditional: boolean;
  /** A GET of a success marker's record: an outcome's generation and previous system. */
  readonly detail: boolean;
  /** A PUT of an agent's heartbeat. */
  readonly heartbeat: boolean;
  result: "pending" | "found" | "not-modified" | "absent" | "written" | "ok" | "error";
}

/** Every request one client made, and when it first wrote a success marker. */
interface Tally {
  readonly requests: Req[];
  successAt: number | undefined;
}

interface BenchAgent {
  readonly name: string;
  readonly tally: Tally;
  readonly agent: Agent;
  storeErrors: number;
  rejected: number;
  failed: number;
  lastError: string | undefined;
  running: Promise<void>;
  /** Stops this agent: a signal of its own, as each agent on its own host has. */
  readonly stop: AbortController;
}

interface Phase {
  readonly name: string;
  readonly start: number;
  end: number;
  peakRss: number;
  readonly cpu: NodeJS.CpuUsage;
  cpuSeconds: number;
  readonly s3Cpu: number;
  s3CpuSeconds: number;
  loopMaxMs: number;
  loopP99Ms: number;
  heapUsedAtEnd: number;
}

interface DeployerSettings {
  readonly storeUrl: string;
  readonly hosts: number;
  readonly offlineTimeout: number;
  readonly secretKey: string;
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
      // S3 clients the agents share (default: one per AGENTS_PER_CLIENT agents).
      clients: { type: "string" },
      // Where the releases and status live: s3rver on loopback (s3), moto's S3 server on loopback
      // (moto), or a directory (dir), which leaves the machine's two cores to the agents and the
      // deployer.
      store: { type: "string", default: "s3" },
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
  const kind = values.store;
  if (kind !== "s3" && kind !== "moto" && kind !== "dir") {
    throw new Error(
      `--store: ${kind} (s3: s3rver on loopback; moto: moto's S3 server on loopback; dir: a directory store)`,
    );
  }
  await runBenchmark(n, interval, idle, clients, kind);
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
    },
    key,
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

async function runBenchmark(
  n: number,
  interval: number,
  idle: number,
  clients: number,
  kind: StoreKind,
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "nixship-bench-agents-"));
  const children = new Set<ChildProcess>();
  let s3: ChildProcess | undefined;
  let moto: MotoServer | undefined;
  const serverPid = (): number | undefined => s3?.pid ?? moto?.pid;
  const cleanUp = (): void => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
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

  const rss = new RssSampler();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const phases: Phase[] = [];
  let current: Phase | undefined;
  const begin = (name: string): void => {
    end();
    loop.reset();
    const phase: Phase = {
      name,
      start: now(),
      end: Number.NaN,
      peakRss: process.memoryUsage().rss,
      cpu: process.cpuUsage(),
      cpuSeconds: 0,
      s3Cpu: cpuSecondsOf(serverPid()),
      s3CpuSeconds: 0,
      loopMaxMs: 0,
      loopP99Ms: 0,
      heapUsedAtEnd: 0,
    };
    rss.onSample = (value) => {
      phase.peakRss = Math.max(phase.peakRss, value);
    };
    current = phase;
    phases.push(phase);
  };
  function end(): void {
    if (current === undefined) return;
    const usage = process.cpuUsage(current.cpu);
    current.end = now();
    current.cpuSeconds = (usage.user + usage.system) / 1e6;
    current.s3CpuSeconds = cpuSecondsOf(serverPid()) - current.s3Cpu;
    current.loopMaxMs = loop.max / 1e6;
    current.loopP99Ms = loop.percentile(99) / 1e6;
    current.heapUsedAtEnd = heapAfterGc();
    current = undefined;
  }

  try {
    console.log(
      `nixship agents benchmark: ${n} agents, poll interval ${interval} s ± ${JITTER * 100}%, ` +
        `idle windows ${idle} s\nnode ${process.version}, ${availableParallelism()} CPUs, ${loadAverage()}`,
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
    const agentStores: ObjectStore[] = [];
    for (let i = 0; i < clients; i++) agentStores.push(await openStore(url));
    const benchStore = await openStore(url);
    const key = generateSecretKey("bench-release-1");
    const releaseKeys = [publicKeyOf(key)];
    const hosts = hostNames(n);
    printDesign(n, interval, idle, clients, kind, url);
    // Load the SDK's request path once, so the baseline RSS includes it.
    await Promise.all(agentStores.map((store) => store.get(`channels/${CHANNEL}.json`)));
    const rssBaseline = process.memoryUsage().rss;
    const baseHeap = heapAfterGc();

    // ---- 1. Agents start, spread over one interval ---------------------------------------------
    begin("agents starting");
    const agentsStarted = now();
    const noop: Activator = {
      apply: async () => ({ status: "activated", generation: 1 }),
      // (The bench's releases reboot nobody.)
      judgeBoot: async () => ({ status: "activated", generation: 1 }),
      inspect: async () => ({ current: null, profile: null, generation: null }),
    };
    const agents: BenchAgent[] = [];
    for (const [i, name] of hosts.entries()) {
      const stateDir = join(work, "agents", name);
      await mkdir(stateDir, { recursive: true });
      const tally: Tally = { requests: [], successAt: undefined };
      const bench: BenchAgent = {
        name,
        tally,
        storeErrors: 0,
        rejected: 0,
        failed: 0,
        lastError: undefined,
        running: Promise.resolve(),
        // One signal per agent: thousands of listeners on one shared signal would make each
        // wait's addEventListener walk them all (seconds of CPU at 10,000 agents), which no
        // agent on its own host pays.
        stop: new AbortController(),
        agent: new Agent({
          store: counting(agentStores[i % clients] as ObjectStore, tally),
          channel: CHANNEL,
          host: name,
          releaseKeys,
          substituters: [],
          cacheKeys: [],
          stateDir,
          activator: noop,
          pollInterval: interval,
          jitter: JITTER,
          emit: (e) => {
            if (e.type === "store-error") {
              bench.storeErrors++;
              bench.lastError = e.message;
            } else if (e.type === "rejected") {
              bench.rejected++;
              bench.lastError = e.message;
            } else if (e.type === "failed") bench.failed++;
          },
        }),
      };
      const delay = Math.random() * interval * 1000;
      const { signal } = bench.stop;
      bench.running = sleep(delay, signal)
        .then(() => (signal.aborted ? undefined : bench.agent.run(signal)))
        .catch((err: unknown) => {
          bench.lastError = `run() stopped: ${err instanceof Error ? err.message : String(err)}`;
        });
      agents.push(bench);
    }
    await sleep(interval * 1000 + 1000, undefined);
    const polled = agents.filter((a) => a.tally.requests.length > 0).length;
    console.log(
      `\n1. ${n} agents started at random moments of ${interval} s (${polled} have polled since)`,
    );

    // ---- 2. Idle, no release -------------------------------------------------------------------
    begin("idle, no release");
    const idleA = await idleWindow(agents, idle, interval);
    console.log(`\n2. Idle, no release yet (${idle} s window)`);
    console.log(formatIdle(idleA, interval));

    // ---- 3. Deploy -----------------------------------------------------------------------------
    begin("deploy");
    const deployer = await runDeployerChild(
      {
        storeUrl: url,
        hosts: n,
        offlineTimeout: interval * 3 + 30,
        secretKey: formatSecretKey(key),
      },
      children,
    );
    end();
    const deployPhase = phases.at(-1);
    const since = (t: number) => (t - deployer.publishedAt) / 1000;
    // Seconds from publish until each agent wrote its success marker.
    const reports = agents.map((a) => since(a.tally.successAt ?? Number.NaN)).sort(ascending);
    const converged = reports.filter(Number.isFinite).length;
    const allReported = reports.at(-1) ?? Number.NaN;
    // When each agent's poll that found the release started, and how long it took from there.
    const found = agents.map((a) => {
      const get = a.tally.requests.find((r) => r.op === "get" && r.result === "found");
      const at = get === undefined ? Number.NaN : since(get.t);
      return { at, took: since(a.tally.successAt ?? Number.NaN) - at };
    });
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
        `  agents' CPU in this phase: ${deployPhase?.cpuSeconds.toFixed(1) ?? "?"} s ` +
          `(${((1000 * (deployPhase?.cpuSeconds ?? Number.NaN)) / n).toFixed(1)} ms per agent); ` +
          `one check of this release (its head's signature, and one shard when sharded): ${verifyMs.toFixed(1)} ms`,
        ...(busy >= 0.5
          ? [
              `  (the agents' process used ${busy.toFixed(2)} CPU-seconds per second of this phase: past`,
              "  its poll, an agent's time here is mostly spent waiting behind the other agents of",
              "  this process; on its own host it would have only its own work: one GET,",
              "  the head's signature, its own shard's GET and check when the release is sharded,",
              "  with no state yet a GET of the next release, 3 state saves and",
              "  2 status PUTs)",
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
    begin("idle, release applied");
    const idleB = await idleWindow(agents, idle, interval);
    // Includes this benchmark's own record of every request (about 15 small objects per agent).
    const idleHeap = heapAfterGc();
    console.log(`\n4. Idle, release applied (${idle} s window)`);
    console.log(formatIdle(idleB, interval));

    // ---- 5. Agents stop; the deployer's status read alone -------------------------------------
    for (const a of agents) a.stop.abort();
    await Promise.all(agents.map((a) => a.running));
    begin("seeding markers");
    const sizes = [...new Set([100, 1000, n])].sort(ascending);
    const seqOf = (size: number) => (size === n ? deployer.seq : 100_000 + size);
    for (const size of sizes) {
      if (size !== n) await seedMarkers(benchStore, seqOf(size), size);
    }
    begin("readProgress alone");
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
    end();
    console.log("\n5. The deployer's status read (readProgress) alone, agents stopped");
    console.log(indent(table(rows, 1), 2));

    // ---- 6. Memory and CPU ---------------------------------------------------------------------
    console.log(
      `\n6. The agents' process (all ${n} agents)${kind === "dir" ? "" : ` and ${serverName(kind)}`}, per phase`,
    );
    console.log(
      indent(
        table(
          [
            [
              "phase",
              "seconds",
              "peak RSS",
              "heap after GC at end",
              "CPU s",
              `${kind === "dir" ? "server" : serverName(kind)} CPU s`,
              "loop delay p99/max ms",
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
    console.log(
      [
        `  RSS of the agents' process before the agents started: ${mb(rssBaseline)} (node, AWS SDK, ${clients} client${clients === 1 ? "" : "s"}).`,
        `  Heap after GC, ${n} agents idle after the deploy: ${mb(idleHeap)} (${((idleHeap - baseHeap) / n / 1e3).toFixed(1)} kB per agent over the ${mb(baseHeap)} before they started).`,
        `  Loop delay: how late the agents' event loop ran its timers (${n} agents share it).`,
        `  ${loadAverage()}: other work on the machine competes for the same ${availableParallelism()} CPUs.`,
      ].join("\n"),
    );
    const trouble = agents.find((a) => a.lastError !== undefined);
    console.log(
      `  agent store errors ${sum(agents.map((a) => a.storeErrors))}, refusals ` +
        `${sum(agents.map((a) => a.rejected))}, failed activations ${sum(agents.map((a) => a.failed))}` +
        (trouble ? ` (e.g. ${trouble.name}: ${trouble.lastError})` : ""),
    );

    // ---- 7. One agent's apply alone -------------------------------------------------------------
    // Fresh agents (no state) of hosts the release names, one after another, with the others
    // stopped: the CPU one host spends to take this release (its poll, the head's signature,
    // its own shard when sharded, the next release's GET, state saves and status PUTs).
    const apply = await timeApplies(url, work, hosts, releaseKeys, interval, noop);
    const applyCpu = apply.map((a) => a.cpu);
    console.log(
      `\n7. One agent's apply alone (${apply.length} fresh agents, one at a time, the others stopped):` +
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
    const allBeats = agents.map((a) => a.tally.requests.filter((r) => r.heartbeat).length);
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
              `  convergence: the agents' own work in the deploy phase took ${deployPhase?.cpuSeconds.toFixed(1) ?? "?"} CPU-seconds in this`,
              `  one process (one JS thread; load ${loadavg()[0]?.toFixed(1)} on ${availableParallelism()} CPUs), against a budget of ${convergeTarget} s`,
              "  of wall time: past the polls, this measures the harness more than the protocol.",
            ]
          : []),
      ].join("\n"),
    );

    await Promise.all(agentStores.map((store) => store.close()));
    await benchStore.close();
  } finally {
    end();
    rss.stop();
    loop.disable();
    clearTimeout(watchdog);
    await stopS3Child(s3);
    await moto?.close();
    cleanUp();
  }
}

function printDesign(
  n: number,
  interval: number,
  idle: number,
  clients: number,
  kind: StoreKind,
  url: string,
): void {
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
      `  ${n} Agents (src/agent/agent.ts) run in this process, each with its own state directory`,
      "  (state file written and fsynced as in production) and a no-op Activator: apply resolves",
      '  {status:"activated", generation:1} at once and inspect reports nothing, so every agent',
      "  goes the whole apply path (state saves, applying + success status) but runs no Nix.",
      `  The agents share ${clients} store${clients === 1 ? "" : "s"} (agent i uses store i mod ${clients})` +
        (kind !== "dir" ? ", each one S3Client with the SDK's" : "."),
      ...(kind !== "dir"
        ? [
            "  keep-alive pool of at most 50 sockets: one client per agent would measure that many SDK",
            "  instances rather than the protocol, and one client for all would queue the agents behind",
            "  50 sockets, which real hosts do not share.",
          ]
        : []),
      "  Each agent's calls go through its own counting wrapper, so requests are counted per agent.",
      `  Each agent starts at a random moment of the first ${interval} s, then polls every`,
      `  ${interval} s ± ${JITTER * 100}% (drawn per wait), as \`nixship agent\` does.`,
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

/** Counts every agent's requests started in the next `seconds`. */
async function idleWindow(
  agents: readonly BenchAgent[],
  seconds: number,
  interval: number,
): Promise<IdleStats> {
  const from = now();
  await sleep(seconds * 1000, undefined);
  const to = now();
  const minutes = (to - from) / 60_000;
  const counts: number[] = [];
  const all: Req[] = [];
  const gaps: number[] = [];
  for (const a of agents) {
    const mine = a.tally.requests.filter((r) => r.t >= from && r.t < to);
    counts.push(mine.length);
    all.push(...mine);
    const getTimes = mine.filter((r) => r.op === "get").map((r) => r.t);
    for (let i = 1; i < getTimes.length; i++) {
      gaps.push(((getTimes[i] ?? 0) - (getTimes[i - 1] ?? 0)) / 1000);
    }
  }
  const gets = all.filter((r) => r.op === "get");
  const results = new Map<string, number>();
  for (const r of gets) results.set(r.result, (results.get(r.result) ?? 0) + 1);
  const mean = sum(counts) / Math.max(1, counts.length);
  return {
    agents: agents.length,
    requests: all.length,
    perMinuteMean: mean / minutes,
    perMinuteMax: Math.max(0, ...counts) / minutes,
    perMinuteMin: Math.min(...counts) / minutes,
    getsPerInterval: gets.length / Math.max(1, agents.length) / ((to - from) / 1000 / interval),
    gets: gets.length,
    conditionalShare: gets.filter((r) => r.conditional).length / Math.max(1, gets.length),
    results: [...results].map(([k, v]) => `${k} ${v}`).join(", "),
    otherOps: countOps(all.filter((r) => r.op !== "get")) || "none",
    heartbeats: all.filter((r) => r.heartbeat).length,
    heartbeatsPerInterval:
      all.filter((r) => r.heartbeat).length /
      Math.max(1, agents.length) /
      ((to - from) / 1000 / interval),
    heartbeatsMax: Math.max(
      0,
      ...agents.map(
        (a) => a.tally.requests.filter((r) => r.heartbeat && r.t >= from && r.t < to).length,
      ),
    ),
    shortestGap: gaps.length > 0 ? Math.min(...gaps) : Number.NaN,
    meanGap: gaps.length > 0 ? sum(gaps) / gaps.length : Number.NaN,
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

/** `inner` with every call recorded in `tally`; closing is left to the owner of `inner`. */
function counting(inner: ObjectStore, tally: Tally): ObjectStore {
  const start = (op: Op, conditional = false, detail = false, heartbeat = false): Req => {
    const req: Req = { t: now(), op, conditional, detail, heartbeat, result: "pending" };
    tally.requests.push(req);
    return req;
  };
  const track = async <T>(req: Req, call: Promise<T>, result: (v: T) => Req["result"]) => {
    try {
      const value = await call;
      req.result = result(value);
      return value;
    } catch (err) {
      req.result = "error";
      throw err;
    }
  };
  return {
    url: inner.url,
    get: ((key: string, options?: GetOptions) =>
      track(
        start("get", options?.ifNoneMatch !== undefined, key.endsWith("/success")),
        inner.get(key, options),
        (v) => (v === undefined ? "absent" : v.status),
      )) as ObjectStore["get"],
    head: (key) => track(start("head"), inner.head(key), (v) => (v ? "found" : "absent")),
    put: async (key, body, options) => {
      const beat = key.startsWith(HEARTBEAT_PREFIX);
      const written = await track(
        start("put", false, false, beat),
        inner.put(key, body, options),
        () => "written",
      );
      if (key.endsWith("/success")) tally.successAt ??= now();
      return written;
    },
    putFile: (key, file, options) =>
      track(start("put"), inner.putFile(key, file, options), () => "written"),
    makeStagingDir: () => inner.makeStagingDir(),
    list: (prefix, options) => track(start("list"), inner.list(prefix, options), () => "ok"),
    delete: (key) => track(start("delete"), inner.delete(key), () => "ok"),
    close: async () => {},
  };
}

function countOps(requests: readonly Req[]): string {
  const by = new Map<string, number>();
  for (const r of requests) {
    const name = r.op === "get" && r.conditional ? "conditional GET" : r.op.toUpperCase();
    by.set(name, (by.get(name) ?? 0) + 1);
  }
  return [...by].map(([k, v]) => `${v} ${k}`).join(", ");
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

function hostNames(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `host-${String(i + 1).padStart(5, "0")}`);
}

/** A store path per host, as distinct systems would have: 32 nix32 characters from its name. */
function systemPath(host: string): StorePath {
  const digest = createHash("sha256").update(host).digest();
  const hash = Array.from(digest.subarray(0, 32), (b) => NIX32_ALPHABET[b % 32]).join("");
  return `/nix/store/${hash}-nixos-system-${host}` as StorePath;
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

/** Heap in use after a full collection: what the process really retains. */
function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc ?? exposedGc();
  gc?.();
  return process.memoryUsage().heapUsed;
}

let gcFunction: (() => void) | undefined;
function exposedGc(): (() => void) | undefined {
  if (gcFunction === undefined) {
    setFlagsFromString("--expose-gc");
    gcFunction = runInNewContext("gc") as () => void;
  }
  return gcFunction;
}

class RssSampler {
  onSample: ((rss: number) => void) | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor() {
    this.#timer = setInterval(() => this.onSample?.(process.memoryUsage().rss), RSS_SAMPLE_MS);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

const ascending = (a: number, b: number): number => a - b;

/** The q-quantile of ascending numbers, ignoring NaN. */
function quantile(ascendingValues: readonly number[], q: number): number {
  const finite = ascendingValues.filter(Number.isFinite);
  return finite[Math.min(finite.length - 1, Math.floor(q * finite.length))] ?? Number.NaN;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
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
