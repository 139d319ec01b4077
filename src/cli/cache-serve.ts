// `nixship cache serve`: any cache URL as an HTTP binary cache for stock Nix.

import { requireCacheInfo } from "../cache/cache-info.js";
import { closeCacheServer, listenCacheServer, logServerFailures } from "../cache/serve.js";
import { UsageError } from "../errors.js";
import { openStore } from "../store/url.js";
import { tokenIn } from "../util/bearer-token.js";
import { parseListen } from "../util/listen-address.js";
import { whenAborted } from "../util/until-aborted.js";
import { type Command, parseFlags, requireFlag } from "./command.js";
import { serviceStop } from "./interrupts.js";
import { readSecretFile, tokenFileNamer } from "./keys-input.js";
import { announceListening } from "./listening.js";

export const cacheServe: Command = {
  path: ["cache", "serve"],
  summary: "serve a cache over HTTP so stock Nix can substitute from it",
  help: `Usage: nixship cache serve CACHE_URL --listen HOST:PORT [--token-file FILE] [--json]

Serves the binary cache at CACHE_URL (a directory or S3) over HTTP. Nix uses it as a
substituter, e.g. --option substituters http://127.0.0.1:8080 with the cache's public key
in trusted-public-keys. This is how a Nix without S3 support reads an S3 cache.

Only cache objects are served: nix-cache-info, <hash>.narinfo and nar/*; everything else,
and anything absent, is 404. Objects are streamed, never held whole in memory. Each
NAR is held to the NarSize its signed narinfo says (Nix writes a NAR into its store before
it checks it): the narinfos served carry that size in their URLs, a NAR that decompresses
past it is cut there, and xz and bzip2 NARs are sent decompressed. With
--token-file, every request must send 'Authorization: Bearer TOKEN' (or Basic auth with
TOKEN as the password, as Nix does from a netrc file). A connection that moves no byte
either way for 60 s (a client that stopped reading a NAR midway, or one that sends nothing)
is closed, and past 1,000 open connections the idle ones are, the oldest first; Nix retries
a download that was cut. At most 32 NARs stream at once (from S3, each holds one of the SDK's
50 sockets while its client reads, so narinfos always find one): a NAR request past that
waits its turn, at most 10 s and 128 in line, and then gets a 503, which Nix retries.

Prints 'listening on http://HOST:PORT' on stderr once ready (with --json, also
{"listening": "http://HOST:PORT"} on stdout), and on stderr each request the
cache's store failed to answer or a NAR it cut (the client gets a 502 that names nothing of
the store);
stops on SIGINT, SIGTERM or SIGHUP, closing its connections, with exit 0 (a second signal
exits 130 at once).

Options:
  --listen HOST:PORT   address to listen on (port 0 picks a free port)
  --token-file FILE    file of mode 0600 holding the token, alone on one line (visible ASCII:
                       no space, control or non-ASCII character; surrounding whitespace
                       ignored)
  --json               once ready, print {"listening": URL} on stdout (the port chosen, for
                       --listen HOST:0)`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { listen: { type: "string" }, "token-file": { type: "string" }, json: { type: "boolean" } },
      "cache serve",
    );
    if (positionals.length !== 1)
      throw new UsageError("cache serve: expects exactly one CACHE_URL");
    const { host, port } = parseListen(
      requireFlag(values.listen, "--listen", "cache serve"),
      "cache serve: --listen",
    );
    let token: string | undefined;
    if (values["token-file"]) {
      const file = values["token-file"];
      token = tokenIn(
        await readSecretFile(file, "--token-file", tokenFileNamer(file)),
        `--token-file ${file}`,
        tokenFileNamer(file).make,
      );
    }
    const store = await openStore(positionals[0] as string);
    // Serving a directory that holds no cache would answer 404 to every client, quietly.
    await requireCacheInfo(store).catch(async (err: unknown) => {
      await store.close();
      throw err;
    });
    const { server, url } = await listenCacheServer(
      {
        store,
        ...(token ? { token } : {}),
        // The store's failures are told here, on the server's side, not to the client.
        onRequest: logServerFailures((line) => io.stderr.write(line)),
      },
      host,
      port,
    );
    announceListening(url, io, values.json === true);
    await whenAborted(serviceStop().signal);
    await closeCacheServer(server).catch(() => {});
    await store.close();
    return 0;
  },
};
