// Starts `nixship cache serve` as its own process (on a free loopback port, or a lab's bridge),
// for Nix to read.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { NIXSHIP_BIN, nixship } from "./cli.js";

export interface RunningServer {
  readonly url: string;
  stop(): Promise<void>;
}

export function startCacheServer(
  cacheUrl: string,
  extraArgs: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
  listen = "127.0.0.1:0",
  // The CLI to run: the checkout's; a bench compiled elsewhere names it.
  bin = NIXSHIP_BIN,
): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      [bin, "cache", "serve", cacheUrl, "--listen", listen, ...extraArgs],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, ...env },
      },
    );
    let stderr = "";
    const timer = setTimeout(() => {
      proc.kill();
      reject(new Error(`cache serve did not start within 15 s: ${stderr}`));
    }, 15_000);
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      const m = /listening on (http:\/\/\S+)/.exec(stderr);
      if (m?.[1]) {
        clearTimeout(timer);
        resolve({
          url: m[1],
          stop: () =>
            new Promise<void>((done) => {
              if (proc.exitCode !== null) return done();
              proc.once("close", () => done());
              proc.kill("SIGTERM");
            }),
        });
      }
    });
    proc.on("close", (code) => {
      clearTimeout(timer);
      reject(new Error(`cache serve exited with ${code}: ${stderr}`));
    });
  });
}

/** A signed cache of the given store paths in `dir`, and its server on the lab's bridge. */
export interface LabCache {
  readonly server: RunningServer;
  /** The cache key's public half, which hosts trust. */
  readonly publicKey: string;
  /** `file://DIR/cache`. */
  readonly url: string;
}

/**
 * Makes a cache key, pushes `paths` signed into `file://DIR/cache`, and serves it on the lab
 * bridge's deployer address (`gateway`): the only address lab hosts can reach.
 */
export async function serveLabCache(
  dir: string,
  paths: readonly string[],
  gateway: string,
  keyName = "lab-cache-1",
): Promise<LabCache> {
  const keyFile = join(dir, "cache.sec");
  const key = await nixship(["key", "generate", "--name", keyName, "--out", keyFile]);
  if (key.code !== 0) throw new Error(`key generate failed: ${key.stderr}`);
  const url = `file://${join(dir, "cache")}`;
  const push = await nixship(["push", ...paths, "--to", url, "--key", keyFile]);
  if (push.code !== 0) throw new Error(`push failed: ${push.stderr}`);
  const server = await startCacheServer(url, [], {}, `${gateway}:0`);
  return { server, publicKey: key.stdout.trim(), url };
}
