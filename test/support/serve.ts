// Starts `nixship cache serve` as its own process on a free loopback port, for Nix to read.
import { spawn } from "node:child_process";
import { NIXSHIP_BIN } from "./cli.js";

export interface RunningServer {
  readonly url: string;
  stop(): Promise<void>;
}

export function startCacheServer(
  cacheUrl: string,
  extraArgs: readonly string[] = [],
  env: NodeJS.ProcessEnv = {},
  listen = "127.0.0.1:0",
): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const proc = spawn(
      process.execPath,
      [NIXSHIP_BIN, "cache", "serve", cacheUrl, "--listen", listen, ...extraArgs],
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
