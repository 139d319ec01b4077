// `nixship cache stats`: what the cache holds, in figures.
import { cacheStats } from "../cache/stats.js";
import { formatCacheStats } from "../ui/cache-stats.js";
import { ProgressLine } from "../ui/progress-line.js";
import { CACHE_FLAGS, CACHE_HELP, openCache, readCacheInput } from "./cache-input.js";
import { type Command, parseFlags, parseIntFlag, refuseArguments, writeJson } from "./command.js";
import { readTrustedKeys } from "./keys-input.js";

export const cacheStatsCommand: Command = {
  path: ["cache", "stats"],
  summary: "paths, bytes by compression, largest closures, deltas, orphans and untrusted narinfos",
  help: `Usage: nixship cache stats [--fleet FILE | --cache URL] [--trusted-key KEY...] [--top N] [--json]

Reads every narinfo (one LIST per 1,000 objects, one GET per narinfo) and reports:
  - paths, their NAR bytes, and the bytes stored, by compression;
  - the largest closures of paths no other path refers to;
  - deltas (docs/deltas.md), apart from the paths above: their paths and bytes, the bytes of
    the targets they stand for, and the pairs noted as not worth one;
  - orphans: NARs that no narinfo names (left by an interrupted push; 'cache gc' deletes
    them), and narinfos whose NAR is missing (a broken cache);
  - narinfos signed by no trusted key (the fleet's cache.publicKeys, or --trusted-key).

Options:
${CACHE_HELP}
  --trusted-key KEY      a public key 'NAME:BASE64' or a file of them; repeat for several
  --top N                largest closures shown (default 10)
  --json                 print the figures as JSON on stdout

Exit codes: 0 reported, 1 failed, 2 bad usage or input.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        ...CACHE_FLAGS,
        "trusted-key": { type: "string", multiple: true },
        top: { type: "string" },
        json: { type: "boolean" },
      },
      "cache stats",
    );
    refuseArguments(positionals, "cache stats", "--cache URL (or --fleet FILE)");
    const { fleet, url } = await readCacheInput(values, io, "cache stats");
    const keys = values["trusted-key"] ?? fleet?.cache?.publicKeys;
    const trusted =
      keys === undefined || keys.length === 0 ? undefined : await readTrustedKeys(keys);
    const top = parseIntFlag(values.top, "--top", "cache stats") ?? 10;
    const store = await openCache(url);
    const line = new ProgressLine(io.stderr);
    try {
      const stats = await cacheStats(store, {
        ...(trusted !== undefined ? { trusted } : {}),
        top,
        onProgress: (read, total) => line.update(`stats: ${read}/${total} narinfos read`),
      }).finally(() => line.clear());
      if (values.json) writeJson(io, stats);
      else io.stdout.write(formatCacheStats(stats));
      return 0;
    } finally {
      await store.close();
    }
  },
};
