// `nixship fetch`: download a path and its closure, verified, then import or restore it.

import { requireCacheInfo } from "../cache/cache-info.js";
import { type FetchSource, fetchAndImport, fetchAndRestore } from "../cache/fetch.js";
import { UsageError } from "../errors.js";
import { openStore } from "../store/url.js";
import { ProgressLine } from "../ui/progress-line.js";
import { type Command, parseFlags, requireFlag, writeJson } from "./command.js";
import { whileTrapped } from "./interrupts.js";
import { requireTrustedKeys } from "./keys-input.js";
import { storePathArgument } from "./store-path-argument.js";

export const fetch: Command = {
  path: ["fetch"],
  summary: "download a path with its closure, verify it, and import or restore it",
  help: `Usage: nixship fetch STORE_PATH --from CACHE_URL --trusted-key KEY... (--import [--store STORE] | --restore DIR) [--json]

Reads the narinfos of STORE_PATH's closure and refuses unless every one is signed by a
trusted key. Then each NAR is downloaded and checked (FileHash, FileSize, NarHash, NarSize)
before anything is kept:
  --import       adds the closure to the local Nix store with 'nix-store --import'
                 (dependencies first; paths already valid are skipped). Needs root or a
                 trusted Nix user. --store STORE imports into another Nix store instead.
  --restore DIR  restores the tree of STORE_PATH itself into DIR, which must not exist
                 (as 'nix-store --restore' does); nothing appears under DIR unless it
                 verified.

Options:
  --from URL          the cache
  --trusted-key KEY   a public key 'NAME:BASE64' or a file of them; repeat for several
  --json              print the result as JSON on stdout

Exit codes: 0 fetched, 1 failed (including a failed verification), 2 bad usage or input.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        from: { type: "string" },
        "trusted-key": { type: "string", multiple: true },
        import: { type: "boolean" },
        store: { type: "string" },
        restore: { type: "string" },
        json: { type: "boolean" },
      },
      "fetch",
    );
    if (positionals.length !== 1) throw new UsageError("fetch: expects exactly one STORE_PATH");
    if (Boolean(values.import) === (values.restore !== undefined)) {
      throw new UsageError("fetch: choose exactly one of --import and --restore DIR");
    }
    if (values.store && !values.import) throw new UsageError("fetch: --store goes with --import");
    const trusted = await requireTrustedKeys(values["trusted-key"], "fetch");
    const root = storePathArgument(positionals[0] as string, "STORE_PATH");
    const store = await openStore(requireFlag(values.from, "--from", "fetch"));
    try {
      // A mistyped URL is said as such, not as a path the cache does not have.
      await requireCacheInfo(store);
      const line = new ProgressLine(io.stderr);
      let total = 0;
      let done = 0;
      const source: FetchSource = {
        store,
        trusted,
        onEvent: (event) => {
          if (event.type === "closure") total = event.toFetch;
          else done++;
          line.update(`fetching: ${done}/${total} paths`);
        },
      };
      if (values.restore !== undefined) {
        const restore = values.restore;
        await whileTrapped("fetch", (signal) =>
          fetchAndRestore(source, root, restore, signal),
        ).finally(() => line.clear());
        if (values.json) writeJson(io, { path: root, restoredTo: values.restore });
        else io.stderr.write(`restored ${root} into ${values.restore}\n`);
      } else {
        const nix = values.store ? { store: values.store } : {};
        const result = await whileTrapped("fetch", (signal) =>
          fetchAndImport(source, root, nix, signal),
        ).finally(() => line.clear());
        if (values.json) writeJson(io, { path: root, ...result });
        else
          io.stderr.write(
            `imported ${result.imported.length} paths (${result.alreadyValid} already present)\n`,
          );
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
