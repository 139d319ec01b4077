// `nixship cache gc`: delete what no release, host, rollback or pin needs from the cache.
import { collectGarbage } from "../cache/gc.js";
import type { LeaseHolder } from "../cache/gc-lease.js";
import {
  addOrigin,
  addRoot,
  DEFAULT_PRICE_PER_GB_MONTH,
  judgeUnreadable,
  type RootsRead,
  type UnreadableRoot,
} from "../cache/gc-plan.js";
import type { LetGo } from "../cache/gc-why.js";
import { SshDelivery } from "../delivery/ssh.js";
import { UsageError } from "../errors.js";
import { namedDeltaTool } from "../fleet/delta-tool.js";
import type { Fleet } from "../fleet/fleet.js";
import { keepGenerationsOf } from "../fleet/host-policy.js";
import { parsePublicKey } from "../nix/keys.js";
import { formatGcReport, gcProgressText, WHY_SHOWN } from "../ui/gc-report.js";
import { ProgressLine } from "../ui/progress-line.js";
import { mapLimit } from "../util/pool.js";
import { letGoFromStore } from "../views/gc-let-go.js";
import { rootsFromStore, type StoreRoots } from "../views/gc-roots.js";
import { CACHE_FLAGS, CACHE_HELP, openCache, readCacheInput } from "./cache-input.js";
import { type Command, parseFlags, parseIntFlag, refuseArguments, writeJson } from "./command.js";
import { trapInterrupts } from "./interrupts.js";

const HOUR = 3600_000;
const DEFAULTS = { keepReleases: 5, graceHours: 24, waitSeconds: 600 } as const;

export const cacheGc: Command = {
  path: ["cache", "gc"],
  summary: "delete from the cache what no release, host, rollback or pin needs",
  help: `Usage: nixship cache gc [--fleet FILE | --cache URL] [--keep-releases N] [--keep-days D]
                        [--keep-generations N] [--grace H] [--price USD] [--wait S]
                        [--stored] [--skip-roots NAME]... [--dry-run] [--json]

Keeps the closure (through the narinfos' References) of every root, and deletes every other
narinfo, its .ls listing and every NAR that no kept narinfo names (orphans from interrupted
pushes too), narinfos first. The roots:
  release   the store paths of the newest N releases of every channel, and of each
            channel's current release (systems, the age that decrypts their secrets, and
            the delta tool their agents fetch deltas with)
  status    every host's current, desired, previous and booted systems (kernel, initrd and
            modules) from the status records in the store (status/hosts/)
  history   every system an agent host was confirmed on in its channel's last 50 releases
            (refreshes not counted), the newest --keep-generations of them and those as many
            rollbacks walk back through (after a rollback the two differ); and every system
            whose newest report there is a failure (reports are not checked here)
  live      with --fleet, each ssh host's answer: current, booted, profile and its recent
            generations (skip with --stored)
  agent     the nixship package each agent runs (from its status record)
  rollout   with --fleet, for every host: the system the newest rollout record signed by a
            key of cache.publicKeys gave it, and the one it ran before (status records are not
            authenticated); for a host whose status record does not read, the systems the
            newest 50 rollout records gave it; for a rollout still running, every system
            it gives and what each host ran before
  secrets   with --fleet, secrets.age
  deltas    with --fleet, deltas.tool
  pin       the paths of 'nixship cache pin'
  recent    narinfos written within --keep-days D
  grace     narinfos written within the grace period
Beside the cache's own objects, a host's secrets bundles that no release read names (none
while a release cannot be read), release shards no release file names, and in a directory
store the temp files, lock files and staging directories of writers that died, go too. Releases, channels,
status records and pins are never touched, and nothing written within the grace period is
deleted but a delta, which goes with the path it rebuilds, whatever its age (docs/deltas.md). The collection waits
for nixship pushes and deploys in progress to finish (up to --wait), takes its lock, and only
then reads the roots; pushes and deploys that start meanwhile wait until it is done (see
docs/cache-gc.md). A root that cannot be read (a release or a shard, a pin, with --fleet an
ssh host that does not answer) stops the collection before anything is deleted, naming it;
--skip-roots NAME collects without it. A host's status record that does not read (a host
writes its own) stops nothing: what else names the host is kept instead (its entry in each
release of the history, its earlier records there, the rollouts' systems), and the report
names it. A release every full reader refuses (a host named in two shards) keeps nothing,
and the report names it with that error (a host whose agent applied its entry from a sound
shard keeps its system by its record). A root whose narinfo
describes another path keeps what its hash names and is reported with the host that named it.
Each collection's report (every deleted path) is kept in the store under gc/reports/, the
newest 20.

Options:
${CACHE_HELP}
                         (with --fleet, also its ssh hosts' live answers, secrets.age and
                         deltas.tool)
  --keep-releases N      newest releases kept per channel (default ${DEFAULTS.keepReleases})
  --keep-days D          also keep paths pushed within D days (default: only the grace period)
  --keep-generations N   systems of each agent host's confirmed history kept (default: the
                         host's keepGenerations in the fleet, a role's where one sets it,
                         else policy's; where that is unset or 0, all the history holds)
  --grace H              hours within which nothing is deleted (default ${DEFAULTS.graceHours}; 0: none)
  --price USD            the storage price per GB-month for the report (default ${DEFAULT_PRICE_PER_GB_MONTH}, S3 Standard)
  --wait S               seconds to wait for pushes and deploys in progress (default ${DEFAULTS.waitSeconds})
  --stored               with --fleet, do not ask ssh hosts; use their status records only
  --skip-roots NAME      collect without the roots of NAME when they cannot be read: a host
                         (its live answer) or an object's key as the error names
                         it (releases/CH/N.json, channels/CH.json, gc/pins/P.json); repeatable
  --dry-run              change nothing; report what would be deleted (every path, by package),
                         why each path goes (the system a rule let go of, in whose closure it
                         is: a release older than --keep-releases, a confirmed system past
                         --keep-generations, a rollout's system no status record names now;
                         or unreferenced, since it was pushed) and what keeps each kept root
                         (the first ${WHY_SHOWN} of each in text, all with --json)
  --json                 print the report as JSON on stdout (every deleted path)

The first SIGINT (Ctrl-C) or SIGTERM stops between delete batches; what was deleted leaves
the cache whole, and the next collection carries on.

Exit codes: 0 collected, 1 failed (a root unreadable, the cache busy) or some deletes failed,
2 bad usage or input, 130 interrupted.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...CACHE_FLAGS,
        "keep-releases": { type: "string" },
        "keep-days": { type: "string" },
        "keep-generations": { type: "string" },
        grace: { type: "string" },
        price: { type: "string" },
        wait: { type: "string" },
        stored: { type: "boolean" },
        "skip-roots": { type: "string", multiple: true },
        "dry-run": { type: "boolean" },
        json: { type: "boolean" },
      },
      "cache gc",
    );
    refuseArguments(positionals, "cache gc", "--cache URL (or --fleet FILE)");
    const keepReleases =
      parseIntFlag(values["keep-releases"], "--keep-releases", "cache gc") ?? DEFAULTS.keepReleases;
    const keepDays = parseNumberFlag(values["keep-days"], "--keep-days");
    const graceHours = parseNumberFlag(values.grace, "--grace") ?? DEFAULTS.graceHours;
    const price = parseNumberFlag(values.price, "--price") ?? DEFAULT_PRICE_PER_GB_MONTH;
    const waitSeconds = parseIntFlag(values.wait, "--wait", "cache gc", 0) ?? DEFAULTS.waitSeconds;
    const { fleet, url } = await readCacheInput(values, io, "cache gc");
    const keepGenerations =
      parseIntFlag(values["keep-generations"], "--keep-generations", "cache gc") ??
      (fleet === undefined ? undefined : keepGenerationsOf(fleet));
    const store = await openCache(url);
    const line = new ProgressLine(io.stderr);
    const trap = trapInterrupts({
      first: () =>
        io.stderr.write(
          "cache gc: interrupted; stopping before the next delete batch (interrupt again to stop at once)\n",
        ),
      second: () => io.stderr.write("cache gc: stopped at once\n"),
    });
    const skip = new Set(values["skip-roots"] ?? []);
    let fromStore: StoreRoots | undefined;
    let rootsSeconds = 0;
    const dryRun = values["dry-run"] === true;
    // Called by the collector once it holds its lock: what it reads is what it keeps. A dry
    // run also reads what the rules let go of, to say why each path goes.
    const readRoots = async (): Promise<RootsRead & { letGo?: readonly LetGo[] }> => {
      line.update("gc: reading the roots from the store");
      const started = performance.now();
      fromStore = await rootsFromStore(store, {
        keepReleases,
        ...(keepGenerations !== undefined ? { keepGenerations } : {}),
        skip,
        explain: dryRun,
        ...(fleet === undefined
          ? {}
          : { rolloutKeys: (fleet.cache?.publicKeys ?? []).map((k) => parsePublicKey(k)) }),
      });
      const read =
        fleet === undefined
          ? fromStore
          : await addFleetRoots(fromStore, fleet, values.stored === true, skip, line);
      const letGo = dryRun
        ? await letGoFromStore(store, { keepReleases, first: fromStore.letGo ?? [] })
        : undefined;
      rootsSeconds = (performance.now() - started) / 1000;
      return letGo === undefined ? read : { ...read, letGo };
    };
    let waitedFor = "";
    try {
      const report = await collectGarbage({
        store,
        readRoots,
        graceMs: graceHours * HOUR,
        ...(keepDays !== undefined ? { keepRecentMs: keepDays * 24 * HOUR } : {}),
        dryRun,
        waitMs: waitSeconds * 1000,
        pricePerGbMonth: price,
        signal: trap.signal,
        onEvent: (event) => {
          if (event.type === "waiting") {
            // Said once for each set of holders, whatever the terminal: a wait is news.
            const said = waitingText(event.holders);
            if (said !== waitedFor) {
              line.clear();
              io.stderr.write(said);
              waitedFor = said;
            }
          }
          line.update(gcProgressText(event));
        },
      }).finally(() => line.clear());
      const requests = store.requestStats?.();
      const full = {
        ...report,
        ...(requests !== undefined ? { storeRequests: requests } : {}),
        rootsSeconds,
        peakRssBytes: process.resourceUsage().maxRSS * 1024,
        channels: fromStore?.channels ?? [],
        statusRecords: fromStore?.hosts ?? 0,
      };
      if (values.json) writeJson(io, full);
      else io.stderr.write(formatGcReport(full));
      return report.problems.some((p) => p.startsWith("could not delete")) ? 1 : 0;
    } finally {
      trap.release();
      line.clear();
      await store.close();
    }
  },
};

function waitingText(holders: readonly LeaseHolder[]): string {
  const lines = holders
    .slice(0, 10)
    .map((h) => `  ${h.what} by ${h.by} since ${h.since}: ${h.why} (${h.lapsesAt})\n`);
  const more = holders.length > 10 ? `  … and ${holders.length - 10} more\n` : "";
  return `cache gc: waiting for ${holders.length} push or deploy in progress to finish:\n${lines.join("")}${more}`;
}

function parseNumberFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || !Number.isFinite(n)) {
    throw new UsageError(
      `cache gc: ${flag} must be a number ≥ 0 written in digits (as 7 or 0.5), got '${value}'`,
    );
  }
  return n;
}

const LIVE_CONCURRENCY = 32;

/**
 * The roots only the fleet knows: secrets.age, deltas.tool, and each ssh host's own answer (its systems and
 * recent generations). A host that does not answer is an unreadable root, as its record would
 * be: its generations are unknown.
 */
async function addFleetRoots(
  read: RootsRead,
  fleet: Fleet,
  storedOnly: boolean,
  skip: ReadonlySet<string>,
  line: ProgressLine,
): Promise<RootsRead> {
  const { roots, origins } = read;
  if (fleet.secrets?.age !== undefined) addRoot(roots, fleet.secrets.age, "secrets");
  // The tool the fleet names for deltas (docs/deltas.md): a host realises it from the cache.
  const tool = namedDeltaTool(fleet.deltas);
  if (tool !== undefined) addRoot(roots, tool, "deltas");
  const ssh = fleet.hosts.filter((h) => h.delivery === "ssh");
  if (storedOnly || ssh.length === 0) return read;
  const delivery = new SshDelivery(fleet.ssh);
  let asked = 0;
  const answers = await mapLimit(ssh, LIVE_CONCURRENCY, async (h) => {
    const status = await delivery.status(h);
    line.update(`gc: asked ${++asked}/${ssh.length} ssh hosts`);
    return status;
  });
  const silent: UnreadableRoot[] = [];
  answers.forEach((status, i) => {
    const host = ssh[i]?.name ?? "?";
    if (!status.reachable) {
      silent.push({
        name: host,
        problem: `ssh host ${host} did not answer, so the generations it can roll back to are unknown: ${status.error}`,
      });
      return;
    }
    for (const p of [
      status.current,
      status.booted,
      status.profile,
      ...status.generations.map((g) => g.path),
    ]) {
      if (p !== undefined) {
        addRoot(roots, p, "live");
        addOrigin(origins, p, `host ${host}`);
      }
    }
  });
  const judged = judgeUnreadable(silent, skip);
  return {
    ...read,
    unreadable: [...read.unreadable, ...judged.unreadable],
    skipped: [...read.skipped, ...judged.skipped],
  };
}
