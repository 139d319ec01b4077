// `nixship verify`: check a cache's signatures and content, problem by problem.
import { verifyCache } from "../cache/verify.js";
import { openStore } from "../store/url.js";
import { ProgressLine } from "../ui/progress-line.js";
import { type Command, parseFlags, parseIntFlag, requireFlag, writeJson } from "./command.js";
import { requireTrustedKeys } from "./keys-input.js";
import { storePathArgument } from "./store-path-argument.js";

export const verify: Command = {
  path: ["verify"],
  summary: "check signatures and hashes of a cache, or of some paths and their closures",
  help: `Usage: nixship verify --cache CACHE_URL --trusted-key KEY... [STORE_PATH...] [--jobs N] [--json]

Checks, for every narinfo in the cache (or for the given paths and their closures):
  - that at least one signature is valid and made by a trusted key;
  - that the NAR exists and matches FileHash and FileSize;
  - that the decompressed NAR matches NarHash and NarSize;
  - that every reference is in the cache (when paths are given).
Each problem is reported with its store path. Checking a whole cache fails when the URL
holds no binary cache at all (no nix-cache-info), so a mistyped URL cannot pass as
"0 paths checked".

Options:
  --cache URL         the cache (file:///dir or s3://bucket/prefix?...)
  --trusted-key KEY   a public key 'NAME:BASE64' or a file of them; repeat for several
  --jobs N            paths checked at once (default 8)
  --json              print {checked, ok, problems:[{path, kind, message}]} on stdout

Exit codes: 0 all good, 1 problems found, 2 bad usage or input.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        cache: { type: "string" },
        "trusted-key": { type: "string", multiple: true },
        jobs: { type: "string" },
        json: { type: "boolean" },
      },
      "verify",
    );
    const trusted = await requireTrustedKeys(values["trusted-key"], "verify");
    const paths = positionals.map((p) => storePathArgument(p, "argument"));
    const jobs = parseIntFlag(values.jobs, "--jobs", "verify") ?? 8;
    const store = await openStore(requireFlag(values.cache, "--cache", "verify"));
    try {
      const line = new ProgressLine(io.stderr);
      let checked = 0;
      let bad = 0;
      const report = await verifyCache({
        store,
        trusted,
        paths,
        jobs,
        onChecked: (_path, problems) => {
          checked++;
          if (problems.length > 0) bad++;
          line.update(`verifying: ${checked} paths checked, ${bad} with problems`);
        },
      }).finally(() => line.clear());
      if (values.json) writeJson(io, { cache: store.url, ...report });
      else {
        for (const p of report.problems) io.stdout.write(`${p.kind}: ${p.message}\n`);
        io.stderr.write(
          `checked ${report.checked} paths: ${report.ok} ok, ${report.checked - report.ok} with problems\n`,
        );
      }
      return report.problems.length === 0 ? 0 : 1;
    } finally {
      await store.close();
    }
  },
};
