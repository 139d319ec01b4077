// One agent process of the agents benchmark (started by agent-procs.ts): its share of the
// simulated agents, each a real Agent with its own state directory and its own counting store,
// and the answers to the coordinator's commands, one JSON line each, about its agents' requests,
// CPU and memory. It exits when its stdin closes, once its agents stopped.
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Agent } from "../src/agent/agent.js";
import { parsePublicKey } from "../src/nix/keys.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import {
  AGENTS_ENV,
  type AgentProcSettings,
  type Answers,
  type Command,
  type Ready,
} from "./agent-procs.js";
import {
  CHANNEL,
  counting,
  hostNames,
  JITTER,
  NOOP_ACTIVATOR,
  type Tally,
  windowPart,
} from "./agents-tally.js";

const RSS_SAMPLE_MS = 50;

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

async function main(): Promise<void> {
  const settings = JSON.parse(process.env[AGENTS_ENV] ?? "{}") as AgentProcSettings;
  const stores: ObjectStore[] = [];
  for (let i = 0; i < settings.clients; i++) stores.push(await openStore(settings.storeUrl));
  // Load the store's request path (the AWS SDK's, on S3) before the agents start.
  await Promise.all(stores.map((store) => store.get(`channels/${CHANNEL}.json`)));
  const releaseKeys = [parsePublicKey(settings.releaseKey)];
  const names = hostNames(settings.first + settings.count).slice(settings.first);
  const agents: BenchAgent[] = [];
  for (const [i, name] of names.entries()) {
    const stateDir = join(settings.work, "agents", name);
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
        store: counting(stores[i % stores.length] as ObjectStore, tally),
        channel: CHANNEL,
        host: name,
        releaseKeys,
        substituters: [],
        cacheKeys: [],
        stateDir,
        activator: NOOP_ACTIVATOR,
        pollInterval: settings.interval,
        jitter: JITTER,
        ...(settings.signingKeyFile === undefined
          ? {}
          : { signingKeyFile: settings.signingKeyFile }),
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
    agents.push(bench);
  }

  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let peakRss = process.memoryUsage().rss;
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, RSS_SAMPLE_MS);

  const answer = async (command: Command): Promise<Answers[Command["cmd"]]> => {
    switch (command.cmd) {
      case "start":
        // Each agent starts at a random moment of the first interval, then polls on its own.
        for (const a of agents) {
          const { signal } = a.stop;
          a.running = sleep(Math.random() * settings.interval * 1000, undefined, { signal })
            .then(() => a.agent.run(signal))
            .catch((err: unknown) => {
              if (signal.aborted) return;
              a.lastError = `run() stopped: ${err instanceof Error ? err.message : String(err)}`;
            });
        }
        return { started: agents.length };
      case "sample": {
        const cpu = process.cpuUsage();
        const rss = process.memoryUsage().rss;
        const sample = {
          cpu: cpu.user + cpu.system,
          rss,
          peakRss: Math.max(peakRss, rss),
          heap: command.gc ? heapAfterGc() : Number.NaN,
          loopP99: loop.percentile(99) / 1e6,
          loopMax: loop.max / 1e6,
        };
        peakRss = rss;
        loop.reset();
        return sample;
      }
      case "polled":
        return { polled: agents.filter((a) => a.tally.requests.length > 0).length };
      case "window":
        return windowPart(
          agents.map((a) => a.tally),
          command.from,
          command.to,
        );
      case "deploy":
        return {
          success: agents.map((a) => a.tally.successAt ?? null),
          found: agents.map(
            (a) => a.tally.requests.find((r) => r.op === "get" && r.result === "found")?.t ?? null,
          ),
        };
      case "stop":
        for (const a of agents) a.stop.abort();
        await Promise.all(agents.map((a) => a.running));
        return { stopped: agents.length };
      case "totals": {
        const trouble = agents.find((a) => a.lastError !== undefined);
        return {
          beats: agents.map((a) => a.tally.requests.filter((r) => r.heartbeat).length),
          storeErrors: agents.reduce((n, a) => n + a.storeErrors, 0),
          rejected: agents.reduce((n, a) => n + a.rejected, 0),
          failed: agents.reduce((n, a) => n + a.failed, 0),
          trouble: trouble ? `${trouble.name}: ${trouble.lastError}` : null,
        };
      }
    }
  };

  const ready: Ready = { ready: true, pid: process.pid };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
  // One command at a time, answered in order.
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === "") continue;
    const reply = await answer(JSON.parse(line) as Command);
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  }
  // stdin closed: the coordinator is done (or gone).
  clearInterval(sampler);
  for (const a of agents) a.stop.abort();
  await Promise.all(agents.map((a) => a.running));
  await Promise.all(stores.map((store) => store.close()));
  process.exit(0);
}

/** Heap in use after a full collection: what the process really retains. */
function heapAfterGc(): number {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
  return process.memoryUsage().heapUsed;
}

await main();
