// `nixship push`: build or take store paths, and push their closures, signed, to a cache.

import { availableParallelism } from "node:os";
import type { LeaseEvent } from "../cache/gc-lease.js";
import { formatNarReport } from "../cache/nar-report.js";
import { pushClosure, pushNarsOnly } from "../cache/push.js";
import { resolvePushInstallables } from "../deploy/build.js";
import { InterruptedError, UsageError } from "../errors.js";
import { requireTrustedSigningKey } from "../fleet/cache-trust.js";
import type { Compression } from "../nix/narinfo.js";
import { openStore } from "../store/url.js";
import { formatLeaseEvent } from "../ui/lease-events.js";
import { formatPushSummary, PushProgress } from "../ui/push-progress.js";
import { formatRequestStats } from "../ui/store-requests.js";
import { type Command, parseFlags, parseIntFlag, requireFlag, writeJson } from "./command.js";
import { trapInterrupts } from "./interrupts.js";
import { readSecretKeyFile } from "./keys-input.js";

const COMPRESSIONS = ["zstd", "xz", "none"] as const;
/** Accepted --level ranges; none takes no level. */
const LEVELS: Record<Compression, readonly [number, number]> = {
  zstd: [1, 19],
  xz: [0, 9],
  bzip2: [1, 9],
  none: [1, 0],
};

export const push: Command = {
  path: ["push"],
  summary: "push closures, signed, into a binary cache",
  help: `Usage: nixship push INSTALLABLE_OR_STORE_PATH... (--to CACHE_URL | --fleet FILE)
                    --key SECRET_FILE [--resign] [--compression zstd|xz|none] [--level N]
                    [--jobs N] [--json]
       nixship push STORE_PATH... --to CACHE_URL --nars-only --json [--compression C] [--jobs N]

Pushes each path and its whole closure into the cache. Store paths are taken as they are;
flake outputs are evaluated and built first, resolved as the fleet file resolves a host's
system: .#name is packages.SYSTEM.name, legacyPackages.SYSTEM.name or
nixosConfigurations.name.config.system.build.toplevel, whichever exists, and a local flake
(.#x, ./dir#x, path:./dir#x; relative to the working directory) is read as git+file inside a
git repository (only tracked files reach the store), else as path: after a search for secret
keys. Other arguments (a flake without '#', an output chosen with '^') go to 'nix build'.
Each NAR is serialised from /nix/store, checked against the NarHash Nix recorded,
compressed and uploaded; its signed .narinfo is written last, and only after the
narinfos of its references, so an interrupted push never leaves a broken closure behind.
The first SIGINT (Ctrl-C) or SIGTERM starts no new path, lets the ones in progress finish,
keeps what is pushed and exits with 130; a second one stops at once.
Paths already in the cache are skipped; with --resign, their narinfos also get the key's
signature (beside the ones they have), when they describe exactly what the local store
holds: the repair for paths pushed earlier with a key the hosts do not trust.

--nars-only (what a deploy runs on its build host, over ssh): store the NARs of the paths the
cache lacks as above, but write no narinfo and take no key; print on stdout, as JSON, each
stored path's narinfo unsigned (storePath, url, compression, fileHash, fileSize, narHash,
narSize, references, deriver, ca) and the paths the cache already had. The deployer checks
them against this machine's Nix, signs them with its own key and writes them. The cache must
exist; its credentials are this machine's (S3: its environment or instance role).

With a fleet (--fleet, or $NIXSHIP_FLEET), the cache is the fleet's (unless --to names
another), and a --key whose public half is not in the fleet's cache.publicKeys is refused:
hosts would refuse every path it signs.

CACHE_URL:
  file:///abs/dir                                   a directory
  s3://bucket/prefix?region=R&endpoint=http://h:p   S3 or an S3-compatible store
    &upload-concurrency=N   parts of a large NAR uploaded at once (1-16, default 4; one large
                            NAR at a time, so uploads hold at most (N + 1) x 8 MiB)
  S3 requests answered 503 SlowDown, 500, 502, 504 or 429 are retried with backoff, up to 8
  attempts and 27 s of waiting each; --json reports the retries (store.retries).

Options:
  --to URL           the cache to push to (default: the fleet's cache.url)
  --fleet FILE       the fleet (a file, or a flake's output: .#nixship) whose
                     cache.publicKeys the key must be in
  --key FILE         Nix secret key file to sign with (see 'nixship key generate')
  --resign           also sign the paths already in the cache with --key
  --nars-only        store the NARs only, and print their narinfos unsigned (no --key)
  --compression C    zstd (default, level 3 as Nix), xz (level 6) or none
  --level N          compression level (zstd 1-19, xz 0-9)
  --jobs N           paths processed at once (default: number of CPUs)
  --json             print the summary as JSON on stdout

Exit codes: 0 pushed, 1 failed, 2 bad usage or input.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        to: { type: "string" },
        fleet: { type: "string" },
        key: { type: "string" },
        resign: { type: "boolean" },
        "nars-only": { type: "boolean" },
        compression: { type: "string" },
        level: { type: "string" },
        jobs: { type: "string" },
        json: { type: "boolean" },
      },
      "push",
    );
    if (positionals.length === 0)
      throw new UsageError("push: name at least one installable or store path");
    const compression = (values.compression ?? "zstd") as Compression;
    if (!(COMPRESSIONS as readonly string[]).includes(compression)) {
      throw new UsageError(
        `push: --compression must be one of ${COMPRESSIONS.join(", ")}, got '${compression}'`,
      );
    }
    const level = parseIntFlag(values.level, "--level", "push", 0);
    if (level !== undefined) {
      const [min, max] = LEVELS[compression];
      if (level < min || level > max) {
        throw new UsageError(
          compression === "none"
            ? "push: --level has no meaning with --compression none"
            : `push: --level for ${compression} must be from ${min} to ${max}, got ${level}`,
        );
      }
    }
    const jobs = parseIntFlag(values.jobs, "--jobs", "push") ?? availableParallelism();
    // (An empty $NIXSHIP_FLEET names nothing; an empty --fleet is refused.)
    const fleetFile = values.fleet ?? (io.env.NIXSHIP_FLEET || undefined);
    // Loaded only with a fleet: reading one costs about 0.1 s of imports, which a push to a
    // cache named by --to alone (the common small push) does not need.
    const input =
      fleetFile === undefined
        ? undefined
        : await (await import("./fleet-input.js")).readFleetInput({ fleet: fleetFile }, io, "push");
    const cache = input?.fleet.cache;
    if (input !== undefined && cache === undefined) {
      throw new UsageError(
        `push: the fleet ${input.fleetFile} has no cache (cache.url, cache.publicKeys)`,
      );
    }
    const to = requireFlag(values.to ?? cache?.url, "--to", "push");
    const narsOnly = values["nars-only"] === true;
    if (narsOnly && (values.key !== undefined || values.resign)) {
      throw new UsageError(
        "push: --nars-only signs nothing: give no --key or --resign (the deployer signs)",
      );
    }
    if (narsOnly && !values.json)
      throw new UsageError("push: --nars-only prints its report with --json");
    const key = narsOnly
      ? undefined
      : await readSecretKeyFile(requireFlag(values.key, "--key", "push"));
    if (key !== undefined && input !== undefined && cache !== undefined) {
      requireTrustedSigningKey(key, cache.publicKeys, input.fleetFile);
    }
    const store = await openStore(to);
    const trap = trapInterrupts({
      first: () =>
        io.stderr.write(
          "push: interrupted; finishing the paths in progress and keeping what is pushed (interrupt again to stop at once)\n",
        ),
      second: () => io.stderr.write("push: stopped at once\n"),
    });
    try {
      const roots = await resolvePushInstallables(positionals, process.cwd(), {}, trap.signal);
      const progress = new PushProgress(io.stderr);
      const common = {
        signal: trap.signal,
        store,
        roots,
        compression,
        jobs,
        ...(level !== undefined ? { level } : {}),
        onEvent: progress.onEvent,
        // No collection of the cache sweeps while the push runs (docs/cache-gc.md).
        lease: { onEvent: (e: LeaseEvent) => io.stderr.write(`${formatLeaseEvent(e)}\n`) },
      };
      if (key === undefined) {
        const nars = await pushNarsOnly(common).finally(() => progress.finish());
        const { unsigned, presentPaths, ...rest } = nars;
        writeJson(io, {
          ...formatNarReport(unsigned, presentPaths),
          summary: { ...rest, pushedPaths: undefined, cache: store.url },
        });
        return 0;
      }
      const summary = await pushClosure({
        ...common,
        key,
        createCache: true,
        ...(values.resign ? { resign: true } : {}),
      }).finally(() => progress.finish());
      const requests = store.requestStats?.();
      if (values.json) {
        writeJson(io, {
          ...summary,
          roots,
          cache: store.url,
          peakRssBytes: process.resourceUsage().maxRSS * 1024,
          ...(requests !== undefined ? { store: requests } : {}),
        });
      } else {
        const sent = requests !== undefined ? `\n${formatRequestStats(requests)}` : "";
        io.stderr.write(`${formatPushSummary(summary, store.url)}${sent}\n`);
      }
      return 0;
    } catch (err) {
      // Whatever failed once interrupted (a compressor or Nix stopped by the terminal's
      // Ctrl-C too), the push was interrupted: what it committed is whole.
      if (trap.signal.aborted && !(err instanceof InterruptedError)) {
        throw new InterruptedError(`push: ${String(trap.signal.reason)}`, {
          hint: "what was pushed is whole (each narinfo after its NAR and its references); push again to finish",
          cause: err,
        });
      }
      throw err;
    } finally {
      trap.release();
      await store.close();
    }
  },
};
