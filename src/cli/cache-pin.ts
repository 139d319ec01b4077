// `nixship cache pin`, `cache unpin` and `cache pins`: store paths a garbage collection keeps
// by name, whatever the fleet runs.

import { CacheLease } from "../cache/gc-lease.js";
import { narInfoKey } from "../cache/layout.js";
import { PIN_MAX_PATHS, readPins, removePin, writePin } from "../cache/pins.js";
import { readNarInfo } from "../cache/read.js";
import { InputError, OperationError, UsageError } from "../errors.js";
import type { StorePath } from "../nix/store-path.js";
import { formatLeaseEvent } from "../ui/lease-events.js";
import { mapLimit } from "../util/pool.js";
import { CACHE_FLAGS, CACHE_HELP, openCache, readCacheInput } from "./cache-input.js";
import { type Command, parseFlags, refuseArguments, requireFlag, writeJson } from "./command.js";
import { trapInterrupts } from "./interrupts.js";
import { storePathArgument } from "./store-path-argument.js";

export const cachePin: Command = {
  path: ["cache", "pin"],
  summary: "keep store paths (and their closures) in the cache whatever the fleet runs",
  help: `Usage: nixship cache pin STORE_PATH... --name NAME [--fleet FILE | --cache URL] [--json]

Records the paths under NAME (gc/pins/NAME.json in the cache's store); 'cache gc' keeps
each one's closure. Pinning again under the same name replaces the pin's paths. Every path
must be in the cache already (push it first). At most ${PIN_MAX_PATHS} paths a pin.

Options:
  --name NAME            letters, digits, '_', '.' and '-', at most 64 characters
${CACHE_HELP}
  --json                 print {"pin": NAME, "paths": [...]} on stdout

Exit codes: 0 pinned, 1 failed, 2 bad usage or input (a path not in the cache, a URL that holds
no cache).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...CACHE_FLAGS, name: { type: "string" }, json: { type: "boolean" } },
      "cache pin",
    );
    const name = requireFlag(values.name, "--name", "cache pin");
    if (positionals.length === 0) throw new UsageError("cache pin: name at least one store path");
    if (positionals.length > PIN_MAX_PATHS) {
      throw new UsageError(`cache pin: at most ${PIN_MAX_PATHS} paths a pin`);
    }
    const paths = [...new Set(positionals.map((p) => storePathArgument(p, "argument")))];
    const { url } = await readCacheInput(values, io, "cache pin");
    const store = await openCache(url);
    // A pin is a root: leased from before it looks at the cache until it is written, so that a
    // collection running meanwhile does not sweep what it pins (docs/cache-gc.md).
    let lease: CacheLease | undefined;
    // An interrupt stops a wait for a collection; once leased, the pin is written and the lease
    // given back (a lease left behind would hold collections off for its 10 minutes).
    const trap = trapInterrupts({ first: () => {}, second: () => {} });
    try {
      lease = await CacheLease.take(store, "pin", {
        onEvent: (e) => io.stderr.write(`${formatLeaseEvent(e)}\n`),
        signal: trap.signal,
      });
      const found = await mapLimit(paths, 16, (p) => readNarInfo(store, p));
      const absent = paths.filter((_, i) => found[i] === undefined);
      if (absent.length > 0) {
        throw new InputError(
          "pin-not-in-cache",
          `cache pin: not in the cache ${store.url}: ${absent.slice(0, 5).join(", ")}${absent.length > 5 ? ` and ${absent.length - 5} more` : ""}`,
          { hint: "push the paths first ('nixship push PATH --to URL'), then pin them" },
        );
      }
      await writePin(store, {
        name,
        paths: paths as StorePath[],
        created: new Date().toISOString(),
      });
      if (values.json) writeJson(io, { pin: name, paths });
      else
        io.stderr.write(
          `pinned ${paths.length} path${paths.length === 1 ? "" : "s"} as ${name} in ${store.url}\n`,
        );
      return 0;
    } finally {
      await lease?.release();
      await store.close();
      trap.release();
    }
  },
};

export const cacheUnpin: Command = {
  path: ["cache", "unpin"],
  summary: "remove a pin (the next gc may then delete what only it kept)",
  help: `Usage: nixship cache unpin NAME [--fleet FILE | --cache URL] [--json]

Removes the pin NAME. What only the pin kept is deleted by the next 'cache gc' (after the
grace period).

Options:
${CACHE_HELP}
  --json                 print {"pin": NAME, "removed": true|false} on stdout

Exit codes: 0 removed, 1 no such pin or failed, 2 bad usage or input (a URL that holds no
cache).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...CACHE_FLAGS, json: { type: "boolean" } },
      "cache unpin",
    );
    if (positionals.length !== 1) throw new UsageError("cache unpin: expects exactly one pin NAME");
    const name = positionals[0] as string;
    const { url } = await readCacheInput(values, io, "cache unpin");
    const store = await openCache(url);
    try {
      if (!(await removePin(store, name))) {
        throw new OperationError("pin-not-found", `no pin named ${name} in ${store.url}`, {
          hint: "'nixship cache pins' lists the pins",
        });
      }
      if (values.json) writeJson(io, { pin: name, removed: true });
      else io.stderr.write(`removed the pin ${name}\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
};

export const cachePins: Command = {
  path: ["cache", "pins"],
  summary: "list the cache's pins",
  help: `Usage: nixship cache pins [--fleet FILE | --cache URL] [--json]

Lists every pin with its paths and when it was made, and whether each path is still in the
cache.

Options:
${CACHE_HELP}
  --json                 print {"pins": [{name, created, paths: [{path, present}]}]} on stdout

Exit codes: 0 listed, 1 failed (or a pin that could not be read), 2 bad usage or input (a URL
that holds no cache).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...CACHE_FLAGS, json: { type: "boolean" } },
      "cache pins",
    );
    refuseArguments(positionals, "cache pins", "--cache URL (or --fleet FILE)");
    const { url } = await readCacheInput(values, io, "cache pins");
    const store = await openCache(url);
    try {
      const { pins, unreadable } = await readPins(store);
      const shown = await mapLimit(pins, 4, async (pin) => ({
        name: pin.name,
        created: pin.created,
        paths: await mapLimit(pin.paths, 16, async (path) => ({
          path,
          present: (await store.head(narInfoKey(path))) !== undefined,
        })),
      }));
      if (values.json) {
        writeJson(io, { pins: shown, unreadable: Object.fromEntries(unreadable) });
      } else {
        if (shown.length === 0) io.stdout.write(`no pins in ${store.url}\n`);
        for (const pin of shown) {
          io.stdout.write(`${pin.name}  (${pin.created})\n`);
          for (const p of pin.paths)
            io.stdout.write(`  ${p.path}${p.present ? "" : "  (not in the cache)"}\n`);
        }
        for (const [key, why] of unreadable) io.stderr.write(`cannot read ${key}: ${why}\n`);
      }
      return unreadable.size > 0 ? 1 : 0;
    } finally {
      await store.close();
    }
  },
};
