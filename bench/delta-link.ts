// Part of `npm run bench:delta`: the time to update one lab host over a link held to
// 50 Mbit/s (tc tbf on its veth, both ways) and 20 ms (a relay on the deployer's side of the
// veth holding each chunk 10 ms each way: this kernel has no netem), nixship's way (activate.sh with --delta-tool, the
// deltas fetched from the cache served on the deployer's side of the link, as a deploy does)
// against `nix copy --from` the same cache of the target whole; the host runs Nix 2.26 (`lab up
// --nix current`). Wall time, bytes over the link (the veth's counters) and the host's CPU
// (rusage of the command's process tree on the host) for each way.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { deltaPairsFor } from "../src/cache/delta-bases.js";
import { computeDeltas, type DeltaTally } from "../src/cache/delta-compute.js";
import { checkActivationResult } from "../src/host/activation-result.js";
import { labGateway, labLayout } from "../src/lab/layout.js";
import { parseSecretKey } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import { shellQuote } from "../src/util/shell-quote.js";
import { type RunningServer, startCacheServer } from "../support/serve.js";
import { type DelayRelay, startDelayRelay } from "./delay-relay.js";
import { EXAMPLES, output, type Pair } from "./delta-corpora.js";
import { parseRusage, RUSAGE_WRAPPER, type Usage } from "./delta-engines.js";
import { backToSystemCommand } from "./host-reset.js";
import { type LabStore, labsDir } from "./lab-store.js";
import { median } from "./stats.js";

const NIXSHIP_BIN = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url));
/** The host's script, as `scriptInput()` sends it with no variables (the build's, dist/host). */
const ACTIVATE_SH = fileURLToPath(new URL("../../dist/host/activate.sh", import.meta.url));
/** Stamps each line of stdin with the seconds since it started (for the logs of link-logs/). */
const STAMP_LINES =
  "import sys,time\nt=time.monotonic()\nfor l in sys.stdin: print('%8.3f %s' % (time.monotonic()-t, l), end='', flush=True)";
/** The lab's name: no other session or test uses `dlk`. */
const LAB = "dlk";
const HOST = `${LAB}1`;
/** Any one command on the host or the deployer (a whole update over the link included). */
const COMMAND_TIMEOUT_MS = 20 * 60_000;
const ACTIVATION_TIMEOUT_S = 1200;

export interface LinkShape {
  /** Each way. */
  readonly rateMbit: number;
  /** Added to each round trip: the relay holds each chunk half of it each way. */
  readonly delayMs: number;
}

/**
 * The tc commands that hold a lab host's link to `rateMbit` each way: toward the host on the
 * veth's end on the deployer's side (what the host downloads), from it on its eth0 (in its
 * namespace); `del` takes them off again. A token bucket (tbf): this machine's kernel has no
 * netem, so the link's delay is a relay's (delay-relay.ts).
 */
export function shapeCommands(
  veth: string,
  netns: string,
  rateMbit: number,
): { readonly add: string[][]; readonly del: string[][] } {
  // A burst of 64 kB (10 ms at 50 Mbit/s, a GSO packet), a queue of 50 ms at the rate.
  const tbf = ["tbf", "rate", `${rateMbit}mbit`, "burst", "64kb", "latency", "50ms"];
  return {
    add: [
      ["tc", "qdisc", "replace", "dev", veth, "root", ...tbf],
      ["ip", "netns", "exec", netns, "tc", "qdisc", "replace", "dev", "eth0", "root", ...tbf],
    ],
    del: [
      ["tc", "qdisc", "del", "dev", veth, "root"],
      ["ip", "netns", "exec", netns, "tc", "qdisc", "del", "dev", "eth0", "root"],
    ],
  };
}

/** The two ways a host is updated over the link. */
export const DELTA_WAY = "nixship, deltas";
export const COPY_WAY = "nix copy --from";

export interface LinkRun {
  readonly way: typeof DELTA_WAY | typeof COPY_WAY;
  /** Which round (from 1): each round runs both ways, the first of them alternating. */
  readonly round: number;
  /** The host's command, start to end (its own clock). */
  readonly wallSeconds: number;
  /** Bytes over the host's veth, both ways (IP packets, headers included). */
  readonly linkBytes: number;
  /** CPU (user + system) of the host's command and every process it waited for. */
  readonly hostCpuSeconds: number;
  /** nixship's way: the host's delta report (paths and compressed bytes by delta and whole). */
  readonly delta?: {
    readonly paths: number;
    readonly bytes: number;
    readonly wholePaths: number;
    readonly failed: number;
  };
  /** nixship's way: why the host did not use deltas at all (its step's `skipped`). */
  readonly skipped?: string;
}

export interface LinkCase {
  readonly name: string;
  /** Paths the target's closure has that the host's lacks, and their NAR bytes. */
  readonly lacking: number;
  readonly lackingNarBytes: number;
  /** The deltas the deployer published for it (computeDeltas), and the wall time it took. */
  readonly tally: DeltaTally;
  readonly publishSeconds: number;
  readonly runs: readonly LinkRun[];
}

export interface LinkSetup {
  readonly root: string;
  /** The mass rebuild's pairs (each a NAR file on either side); none: that case is not run. */
  readonly mass: readonly Pair[];
  readonly env: NodeJS.ProcessEnv;
  readonly shape: LinkShape;
  /** Rounds of both ways, each measured run right after the paths were deleted. */
  readonly rounds: number;
  /** Where the lab keeps its host store and cache. */
  readonly store: LabStore;
  readonly log: (line: string) => void;
}

/** Builds the systems, starts the lab, and updates its host over the held link, each case. */
export async function linkBench(setup: LinkSetup): Promise<LinkCase[]> {
  const { root, log, shape } = setup;
  const work = join(root, "link");
  await mkdir(work, { recursive: true });
  const labs = labsDir(root, LAB, setup.store, (command, args) =>
    output(command, args, { env: setup.env, timeoutMs: COMMAND_TIMEOUT_MS }),
  );
  // Each measured command's stderr, its lines stamped: where the time went.
  const logsDir = join(root, "link-logs");
  const env: NodeJS.ProcessEnv = { ...setup.env, NIXSHIP_LAB_DIR: labs.dir };
  const local = (command: string, args: readonly string[], input?: Buffer) =>
    output(command, args, {
      env,
      timeoutMs: COMMAND_TIMEOUT_MS,
      ...(input ? { input } : {}),
    });
  const nixship = (...args: string[]) => local(process.execPath, [NIXSHIP_BIN, ...args]);

  log("  building the systems (once; the mass rebuild's paths restored from its NARs)...");
  const tool = await buildExpr(
    local,
    'derivation { name = "zstd-from-debian"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "mkdir -p $out/bin && cp /usr/bin/zstd $out/bin/zstd"]; PATH = "/usr/bin:/bin"; }',
  );
  const cases: { name: string; slug: string; from: StorePath; to: StorePath }[] = [];
  if (setup.mass.length > 0) {
    const [before, after] = await massSystems(local, work, setup.mass);
    cases.push({
      name: `mass rebuild (${setup.mass.length} paths)`,
      slug: "mass",
      from: before,
      to: after,
    });
  }
  const built = JSON.parse(
    await local("nix", [
      "build",
      "--no-link",
      "--json",
      `path:${EXAMPLES}#web-v1`,
      `path:${EXAMPLES}#web-v2`,
    ]),
  ) as { outputs: { out: StorePath } }[];
  const [v1, v2] = built.map((b) => b.outputs.out);
  if (v1 && v2) cases.push({ name: "lab example web-v1 -> web-v2", slug: "lab", from: v1, to: v2 });

  let server: RunningServer | undefined;
  let relay: DelayRelay | undefined;
  let shaped: string[][] = [];
  let labUp = false;
  const unshape = async () => {
    for (const command of shaped) {
      await local(command[0] as string, command.slice(1)).catch(() => "");
    }
    shaped = [];
  };
  const cleanup = async () => {
    await unshape();
    await relay?.close();
    relay = undefined;
    await server?.stop();
    server = undefined;
    if (labUp) await nixship("lab", "down", "--name", LAB).catch(() => "");
    labUp = false;
    await labs.release();
  };
  // An interrupt takes the tc rules, the server and the lab down before the bench ends.
  const onSignal = (signal: NodeJS.Signals) => {
    log(`  ${signal}: taking the link's rules, the cache server and lab ${LAB} down...`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    // A lab of this name left by a run that was killed outright goes first.
    await nixship("lab", "down", "--name", LAB).catch(() => "");
    await labs.prepare();
    log(`  starting lab ${LAB} (one host, Nix 2.26)...`);
    const lab = JSON.parse(
      await nixship("lab", "up", "1", "--name", LAB, "--nix", "current", "--json"),
    ) as { number: number; dir: string };
    labUp = true;
    const host = labLayout(dirname(lab.dir), LAB, lab.number, 1).hosts[0];
    if (host === undefined) throw new Error("the lab has no host");
    const fleet = JSON.parse(await readFile(join(lab.dir, "nixship.json"), "utf8")) as {
      cache: { url: string; publicKeys: string[] };
    };
    const cacheUrl = fleet.cache.url;
    const publicKey = fleet.cache.publicKeys[0] as string;
    const secret = join(lab.dir, "cache.sec");
    log("  pushing the systems and the delta tool to the lab's cache...");
    await nixship(
      "push",
      tool,
      ...cases.flatMap((c) => [c.from, c.to]),
      "--to",
      cacheUrl,
      "--key",
      secret,
    );
    server = await startCacheServer(cacheUrl, [], env, "127.0.0.1:0", NIXSHIP_BIN);
    const served = new URL(server.url);
    // The host reaches the cache through the relay on the lab's bridge: the link's delay.
    relay = await startDelayRelay(
      labGateway(lab.number),
      { host: served.hostname, port: Number(served.port) },
      shape.delayMs / 2,
    );
    const url = `http://${relay.address}`;

    const ssh = (command: string, input?: Buffer) =>
      local("ssh", ["-F", join(lab.dir, "ssh_config"), HOST, command], input);
    await ssh("cat > /tmp/nixship-bench-rusage.py", Buffer.from(RUSAGE_WRAPPER));
    let runs = 0;
    /** Runs `command` on the host (stdin `input`), measured: its usage, its stdout, the link's bytes. */
    const measured = async (command: string, input?: Buffer, logName?: string) => {
      runs++;
      const usage = `/tmp/nixship-bench-rusage-${runs}`;
      const stderr = `/tmp/nixship-bench-stderr-${runs}`;
      // A cache directory of its own: Nix's narinfo cache (~/.cache/nix) starts empty each time.
      const prefix = `env XDG_CACHE_HOME=/tmp/nixship-bench-xdg-${runs} /usr/bin/python3 /tmp/nixship-bench-rusage.py ${usage}`;
      // Its stderr, each line with the seconds since the start (the stamper is not measured).
      // Fd 3 (ssh's stdout) closed for the command: a service it starts must not hold it open.
      const status = `/tmp/nixship-bench-status-${runs}`;
      const stamped =
        `{ { ${prefix} ${command}; echo $? > ${status}; } 2>&1 1>&3 3>&- | ` +
        `/usr/bin/python3 -c ${shellQuote(STAMP_LINES)} > ${stderr}; } 3>&1; exit "$(cat ${status})"`;
      const before = await linkCounters(host.veth);
      const stdout = await ssh(stamped, input);
      const linkBytes = (await linkCounters(host.veth)) - before;
      const used: Usage = parseRusage(await ssh(`cat ${usage}`));
      if (logName !== undefined) {
        await mkdir(logsDir, { recursive: true });
        await writeFile(join(logsDir, `${logName}.log`), await ssh(`cat ${stderr}`));
      }
      return { used, stdout, linkBytes };
    };
    const activate = async (path: StorePath, logName?: string) => {
      const r = await measured(
        [
          "sh -s -- activate --path",
          path,
          "--substituter",
          url,
          "--trusted-key",
          shellQuote(publicKey),
          "--activation-timeout",
          String(ACTIVATION_TIMEOUT_S),
          "--delta-tool",
          tool,
        ].join(" "),
        await readFile(ACTIVATE_SH),
        logName,
      );
      const answer = checkActivationResult(JSON.parse(r.stdout.trim().split("\n").at(-1) ?? ""));
      if ("problem" in answer || !answer.ok)
        throw new Error(`activating ${path} on ${HOST}: ${JSON.stringify(answer)}`);
      return { ...r, answer };
    };

    const results: LinkCase[] = [];
    for (const c of cases) {
      log(`  ${c.name}: the host gets ${c.from} (link unheld)...`);
      await unshape();
      await activate(c.from);
      const had = new Set(await closure(local, c.from));
      const lacking = (await closure(local, c.to)).filter((p) => !had.has(p));
      const lackingNarBytes = await narBytes(local, lacking);

      log(`  ${c.name}: publishing the deltas of ${lacking.length} paths (computeDeltas)...`);
      const started = performance.now();
      const store = await openStore(cacheUrl);
      let tally: DeltaTally;
      try {
        const key = parseSecretKey(await readFile(secret, "utf8"));
        tally = await computeDeltas(store, key, deltaPairsFor([...had], lacking));
      } finally {
        await store.close();
      }
      const publishSeconds = (performance.now() - started) / 1000;

      const commands = shapeCommands(host.veth, host.netns, shape.rateMbit);
      for (const command of commands.add) await local(command[0] as string, command.slice(1));
      shaped = commands.del;

      /** The host back on the old system, the paths either way brought deleted: each run fetches them all. */
      const forget = async () => {
        await ssh(
          `${backToSystemCommand(c.from)} && { xargs nix-store --delete >/dev/null 2>&1; true; }`,
          Buffer.from(lacking.join("\n")),
        );
        const invalid = await ssh(
          "xargs nix-store --check-validity --print-invalid",
          Buffer.from(lacking.join("\n")),
        );
        if (invalid.split("\n").filter((l) => l).length !== lacking.length)
          throw new Error(`${HOST} kept some of the paths it fetched: cannot measure again`);
      };
      const copyCommand = [
        "nix --extra-experimental-features nix-command copy --from",
        url,
        "--option require-sigs true --option trusted-public-keys",
        shellQuote(publicKey),
        c.to,
      ].join(" ");
      const runCopy = async (round: number): Promise<LinkRun> => {
        const r = await measured(copyCommand, undefined, `${c.slug}-nix-copy-${round}`);
        return {
          way: COPY_WAY,
          round,
          wallSeconds: r.used.wallSeconds,
          linkBytes: r.linkBytes,
          hostCpuSeconds: r.used.cpuSeconds,
        };
      };
      const runOurs = async (round: number): Promise<LinkRun> => {
        const r = await activate(c.to, `${c.slug}-nixship-${round}`);
        const current = (await ssh("readlink /run/current-system")).trim();
        if (current !== c.to) throw new Error(`${HOST} runs ${current}, not ${c.to}`);
        const d = "delta" in r.answer ? r.answer.delta : undefined;
        return {
          way: DELTA_WAY,
          round,
          wallSeconds: r.used.wallSeconds,
          linkBytes: r.linkBytes,
          hostCpuSeconds: r.used.cpuSeconds,
          ...(d === undefined
            ? {}
            : "skipped" in d
              ? { skipped: d.skipped }
              : {
                  delta: {
                    paths: d.paths,
                    bytes: d.bytes ?? 0,
                    wholePaths: d.wholePaths,
                    failed: d.failed,
                  },
                }),
        };
      };
      // Every measured run fetches right after the same paths were deleted (this VM's ext4
      // creates files more slowly after deletions), so one unmeasured copy goes first; the ways
      // take turns at going first, round by round.
      log(`  ${c.name}: one copy unmeasured, so that every measured run follows a deletion...`);
      await measured(copyCommand);
      const runs: LinkRun[] = [];
      for (let round = 1; round <= setup.rounds; round++) {
        const order = round % 2 === 1 ? [runCopy, runOurs] : [runOurs, runCopy];
        for (const run of order) {
          await forget();
          log(
            `  ${c.name}, round ${round} of ${setup.rounds}: ${run === runCopy ? "nix copy --from" : "nixship activate --delta-tool"} over the held link...`,
          );
          runs.push(await run(round));
        }
      }
      results.push({
        name: c.name,
        lacking: lacking.length,
        lackingNarBytes,
        tally,
        publishSeconds,
        runs,
      });
      await unshape();
    }
    return results;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
    await rm(work, { recursive: true, force: true });
  }
}

export type Local = (command: string, args: readonly string[], input?: Buffer) => Promise<string>;

export async function buildExpr(local: Local, expr: string): Promise<StorePath> {
  const built = JSON.parse(
    await local("nix", ["build", "--no-link", "--json", "--impure", "--expr", expr]),
  ) as { outputs: { out: StorePath } }[];
  return built[0]?.outputs.out as StorePath;
}

/**
 * The mass rebuild as two systems of examples/system.nix, each with the corpus's paths of its
 * side in its closure (each path restored from its NAR; named `bench-lib000-1.0`, one package
 * name per path as a real closure has): before and after. A `round` gives the after side store
 * paths of its own (the same contents): a new rebuild to deploy, its deltas computed anew.
 * With `zstd` (a version), both carry system.nix's stand-in for nixpkgs' zstd, as a NixOS
 * system does: the zstd a host applies deltas with when the fleet file names none.
 */
export async function massSystems(
  local: Local,
  work: string,
  pairs: readonly Pair[],
  round = "",
  zstd?: string,
): Promise<[StorePath, StorePath]> {
  await output("cp", ["-r", join(EXAMPLES, "system.nix"), join(EXAMPLES, "web"), work]);
  const side = (nar: (p: Pair) => string) =>
    pairs
      .map((p) => {
        // A store path's name: the corpus's names with what a name cannot hold made dashes
        // ("linux-image 6.1.176 -> 6.1.192" is linux-image-6.1.176-6.1.192).
        const name = p.name
          .replace(/-(\d{3})-/, "$1-")
          .replace(/[^A-Za-z0-9+._?=-]+/g, "-")
          .replace(/-+/g, "-");
        return `{ name = ${JSON.stringify(name)}; nar = ${JSON.stringify(nar(p))}; }`;
      })
      .join(" ");
  await writeFile(
    join(work, "mass.nix"),
    `# The mass rebuild's two systems (bench/delta-link.ts).
{ side, round ? "" }:
let
  nars = { before = [ ${side((p) => p.baseNar)} ]; after = [ ${side((p) => p.targetNar)} ]; }.\${side};
  paths = map (n: derivation {
    inherit (n) name;
    round = if side == "after" then round else "";
    system = "x86_64-linux";
    builder = "/bin/sh";
    args = [ "-c" "nix-store --restore $out < \${n.nar}" ];
    PATH = "/usr/bin:/bin";
  }) nars;
in import ./system.nix {
  system = "x86_64-linux";
  name = "web-mass";
  version = side;
  tag = "mass";
  nonce = "nixship-bench-delta-link-\${side}\${round}";
  programs = { bench-mass-paths = "# \${toString paths}"; };
  zstd = ${zstd === undefined ? "null" : JSON.stringify(zstd)};
}
`,
  );
  const file = join(work, "mass.nix");
  const before = await buildExpr(local, `import ${file} { side = "before"; }`);
  const after = await buildExpr(
    local,
    `import ${file} { side = "after"; round = ${JSON.stringify(round)}; }`,
  );
  return [before, after];
}

async function closure(local: Local, path: string): Promise<StorePath[]> {
  return (await local("nix-store", ["-qR", path])).split("\n").filter((l) => l) as StorePath[];
}

async function narBytes(local: Local, paths: readonly StorePath[]): Promise<number> {
  if (paths.length === 0) return 0;
  const info = JSON.parse(await local("nix", ["path-info", "--json", ...paths])) as {
    narSize: number;
  }[];
  return info.reduce((sum, p) => sum + p.narSize, 0);
}

/** Bytes through the veth so far, both ways. */
export async function linkCounters(veth: string): Promise<number> {
  const read = async (counter: string) =>
    Number(await readFile(`/sys/class/net/${veth}/statistics/${counter}`, "utf8"));
  return (await read("rx_bytes")) + (await read("tx_bytes"));
}

/** One way's runs of a case: their count, and the medians of each figure. */
export interface LinkMedians {
  readonly runs: number;
  readonly wallSeconds: number;
  readonly minWallSeconds: number;
  readonly maxWallSeconds: number;
  readonly hostCpuSeconds: number;
  readonly linkBytes: number;
}

/** The medians of `way`'s runs; undefined when that way has none. */
export function linkMedians(
  runs: readonly LinkRun[],
  way: LinkRun["way"],
): LinkMedians | undefined {
  const mine = runs.filter((r) => r.way === way);
  if (mine.length === 0) return undefined;
  const walls = mine.map((r) => r.wallSeconds);
  return {
    runs: mine.length,
    wallSeconds: median(walls),
    minWallSeconds: Math.min(...walls),
    maxWallSeconds: Math.max(...walls),
    hostCpuSeconds: median(mine.map((r) => r.hostCpuSeconds)),
    linkBytes: median(mine.map((r) => r.linkBytes)),
  };
}
