// `nixship cache init`: make a binary cache where there is none (its nix-cache-info).
import { ensureCacheInfo } from "../cache/cache-info.js";
import { UsageError } from "../errors.js";
import { openStore } from "../store/url.js";
import { type Command, parseFlags, writeJson } from "./command.js";

export const cacheInit: Command = {
  path: ["cache", "init"],
  summary: "make a binary cache at a URL (only this and push ever create one)",
  help: `Usage: nixship cache init CACHE_URL [--json]

Writes the cache's nix-cache-info (StoreDir /nix/store, priority 40), unless it has one:
running it twice is harmless. A cache for another store directory is refused.

Only 'cache init' and 'push' create a cache. deploy and cache serve require one (and
verify, of a whole cache), so that a mistyped URL fails instead of starting a new, empty
cache.

CACHE_URL:
  file:///abs/dir                                   a directory (made if missing)
  s3://bucket/prefix?region=R&endpoint=http://h:p   S3 or an S3-compatible store

Options:
  --json    print {"cache": URL, "created": true|false} on stdout

Exit codes: 0 ready, 1 failed, 2 bad usage or input.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { json: { type: "boolean" } }, "cache init");
    if (positionals.length !== 1) throw new UsageError("cache init: expects exactly one CACHE_URL");
    const store = await openStore(positionals[0] as string);
    try {
      const created = await ensureCacheInfo(store);
      if (values.json) writeJson(io, { cache: store.url, created });
      else io.stderr.write(`${created ? "created a cache at" : "already a cache:"} ${store.url}\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
};
