// `nixship release list` and `nixship release show`: a channel's signed releases in a store.

import { requireCacheInfo } from "../cache/cache-info.js";
import { HISTORY_RELEASES } from "../channel/history-store.js";
import { InputError, UsageError } from "../errors.js";
import { DEFAULT_FLEET_FILE } from "../fleet/load-fleet.js";
import { parsePublicKey } from "../nix/keys.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { formatReleaseList } from "../ui/release-list.js";
import { formatReleaseShow } from "../ui/release-show.js";
import { readReleaseList, readReleaseShow } from "../views/release-view.js";
import { type CliIO, type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { type FleetInput, readFleetInput } from "./fleet-input.js";
import { readTrustedKeys } from "./keys-input.js";

const STORE_FLAGS = {
  channel: { type: "string" },
  store: { type: "string" },
  fleet: { type: "string" },
  json: { type: "boolean" },
} as const;

const STORE_HELP = `  --channel NAME     the channel (default: the fleet's releases.channel)
  --store URL        the store holding the releases (default: the fleet file's cache.url)
  --fleet FILE       the fleet file, or a flake's fleet output (.#nixship), when --store is
                     not given (default: $NIXSHIP_FLEET, else ./${DEFAULT_FLEET_FILE}, else
                     .#nixship)
  --json             machine-readable output on stdout`;

export const releaseList: Command = {
  path: ["release", "list"],
  summary: "list a channel's releases, and the one the channel points at",
  help: `Usage: nixship release list [--channel NAME] [--store URL] [--fleet FILE] [--json]

Lists the release files of a channel (releases/<channel>/<seq>.json in the store), oldest
first: number, creation time, kind (deploy, rollback or refresh), host count and digest. The release
the channel points at (channels/<channel>.json) is marked '*'. A file that does not parse as
a release is listed with the reason. Signatures are not checked here: use 'release show
--trusted-key'.

Options:
${STORE_HELP}

Exit codes: 0 listed (even when empty), 1 the store could not be read, 2 bad usage or input.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, STORE_FLAGS, "release list");
    refuseArguments(positionals, "release list");
    const { store, fleet } = await openReleaseStore(values, io, "release list", {
      fleetBesideStore: true,
    });
    try {
      const channel = releaseChannel(values.channel, fleet, "release list");
      const { releases, warnings } = await readReleaseList(store, channel);
      // None there: a store that holds no binary cache at all is likely a mistyped URL.
      if (releases.length === 0) await requireCacheInfo(store);
      if (values.json) {
        writeJson(io, { store: store.url, channel, releases });
        return 0;
      }
      if (releases.length === 0) {
        io.stderr.write(`channel ${channel} has no releases in ${store.url}\n`);
        return 0;
      }
      io.stdout.write(formatReleaseList(releases));
      for (const w of warnings) io.stderr.write(`warning: ${w}\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
};

export const releaseShow: Command = {
  path: ["release", "show"],
  summary:
    "show one release of a channel (or the latest), verified with --trusted-key or the fleet's release keys",
  help: `Usage: nixship release show [SEQ|latest] [--channel NAME] [--store URL] [--fleet FILE]
                            [--trusted-key KEY...] [--json]

Shows a release: its number, kind, action, health checks, confirmation timeout, its digest
and the digest of the release before it, and per host: the system the release names
(DESIRED), the one the host last reported running (RUNNING, from status/hosts/<host>.json),
and the last system confirmed healthy on it (LAST CONFIRMED, from the status markers of the
channel's last ${HISTORY_RELEASES} releases, refreshes not counted; with --trusted-key, only
releases those keys signed count). 'same' means the same system as DESIRED. 'latest' is the release the channel
points at. The 'published' line (--json 'origin') says who published it and from what
source, from the origin document beside it (releases/<channel>/<seq>.origin.json): shown as
true only when a trusted key signed it for this very release; one changed in the store, copied
from another release or signed by another key is said to be not believed (with a warning),
never shown.

With --trusted-key, or else with a fleet file that lists releases.publicKeys (the one that
names the store, or --fleet beside --store), the release's signature is checked first, and
the command fails unless one of those keys signed exactly this content. Without either,
nothing is verified, and the output says so.

Options:
  SEQ                a release number, or 'latest' (the default)
${STORE_HELP}
  --trusted-key KEY  a release public key 'NAME:BASE64' or a file of them; repeat for several
                     (instead of the fleet file's releases.publicKeys)

Exit codes: 0 shown (and verified, when keys were given), 1 no such release or the store could
not be read, 2 bad usage, or a release that is malformed, unsigned or not trusted.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...STORE_FLAGS, "trusted-key": { type: "string", multiple: true } },
      "release show",
    );
    if (positionals.length > 1) {
      throw new UsageError(
        "release show: expects one SEQ or 'latest' (none: the latest)",
        "see 'nixship release show --help'",
      );
    }
    const which = parseWhich(positionals[0] ?? "latest");
    // Given --trusted-key, verify even if its files hold no key: then nothing is trusted.
    const flagged = values["trusted-key"] ?? [];
    const flagKeys = await readTrustedKeys(flagged);
    const { store, fleet } = await openReleaseStore(values, io, "release show", {
      fleetBesideStore: true,
    });
    const fleetKeys = flagged.length === 0 ? fleet?.fleet.releases?.publicKeys : undefined;
    const verified = flagged.length > 0 || fleetKeys !== undefined;
    const trusted = fleetKeys === undefined ? flagKeys : fleetKeys.map((k) => parsePublicKey(k));
    const trustedFrom =
      fleetKeys === undefined || fleet === undefined
        ? "the trusted keys"
        : `releases.publicKeys of ${fleet.fleetFile}`;
    try {
      const channel = releaseChannel(values.channel, fleet, "release show");
      const shown = await readReleaseShow(store, channel, which, verified ? trusted : undefined);
      if (values.json) {
        writeJson(io, { store: store.url, ...shown });
        return 0;
      }
      io.stdout.write(formatReleaseShow(shown, trustedFrom));
      for (const w of shown.warnings) io.stderr.write(`warning: ${w}\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
};

function parseWhich(text: string): number | "latest" {
  if (text === "latest") return text;
  if (/^[1-9][0-9]{0,14}$/.test(text)) return Number(text);
  throw new UsageError(
    `release show: expected a release number ≥ 1 or 'latest', got '${text}'`,
    "see 'nixship release list' for the numbers",
  );
}

/**
 * `--store`, else the fleet file's cache URL; with the fleet file when it was read (no --store,
 * or with `fleetBesideStore` a --fleet named beside it), for its release keys.
 */
async function openReleaseStore(
  values: { store?: string | undefined; fleet?: string | undefined },
  io: CliIO,
  command: string,
  { fleetBesideStore = false } = {},
): Promise<{ store: ObjectStore; fleet?: FleetInput }> {
  if (values.store !== undefined && values.store !== "") {
    const input =
      fleetBesideStore && values.fleet !== undefined
        ? await readReleaseFleet(values, io)
        : undefined;
    return {
      store: await openStore(values.store),
      ...(input === undefined ? {} : { fleet: input }),
    };
  }
  const input = await readReleaseFleet(values, io);
  if (input.fleet.cache === undefined) {
    throw new UsageError(
      `${command}: --store is required: the fleet file ${input.fleetFile} has no cache`,
      `see 'nixship ${command} --help'`,
    );
  }
  return { store: await openStore(input.fleet.cache.url), fleet: input };
}

/** `--channel`, else the fleet's `releases.channel`; a usage error when neither names one. */
function releaseChannel(
  flag: string | undefined,
  fleet: FleetInput | undefined,
  command: string,
): string {
  if (flag !== undefined && flag !== "") return flag;
  const named = fleet?.fleet.releases?.channel;
  if (named !== undefined) return named;
  throw new UsageError(
    `${command}: name the channel with --channel NAME${fleet === undefined ? "" : ` (the fleet ${fleet.fleetFile} has no releases.channel)`}`,
    `see 'nixship ${command} --help'`,
  );
}

/** The fleet file named by --fleet, $NIXSHIP_FLEET or the default, with --store as the fix. */
async function readReleaseFleet(
  values: { fleet?: string | undefined },
  io: CliIO,
): Promise<FleetInput> {
  return await readFleetInput(values, io).catch((err: unknown) => {
    if (
      err instanceof InputError &&
      (err.code === "fleet-file-unreadable" || err.code === "fleet-output-missing")
    ) {
      throw new InputError(err.code, err.message, {
        hint: "pass --store URL, or name the fleet file with --fleet",
        cause: err,
      });
    }
    throw err;
  });
}
