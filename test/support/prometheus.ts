// A real Prometheus (Debian's package; scripts/setup.sh installs it) for one test file: on a free
// port of 127.0.0.1, its storage in a temporary directory, scraping the lab hosts' example
// service (/metrics on port 80) every second, each target labelled with its host's name. Stopped
// and removed at the end.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";

export interface TestPrometheus {
  /** Its base URL, as a fleet's `prometheus.url`. */
  readonly url: string;
  readonly stop: () => Promise<void>;
}

/** How long Prometheus may take to start answering. */
const READY_WITHIN_MS = 60_000;

/** Starts Prometheus scraping `hosts` (`address:80/metrics`), labelled `host="NAME"`. */
export async function startPrometheus(
  hosts: readonly { readonly name: string; readonly address: string }[],
): Promise<TestPrometheus> {
  const dir = await mkdtemp(join(tmpdir(), "nixship-prometheus-"));
  const config = join(dir, "prometheus.yml");
  // YAML is a superset of JSON: the configuration written as JSON needs no YAML writer.
  await writeFile(
    config,
    JSON.stringify({
      global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
      scrape_configs: [
        {
          job_name: "lab",
          static_configs: hosts.map((h) => ({
            targets: [`${h.address}:80`],
            labels: { host: h.name },
          })),
        },
      ],
    }),
  );
  let lastError = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(
      "prometheus",
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    if (await ready(url, child)) {
      return {
        url,
        stop: async () => {
          child.kill("SIGTERM");
          await Promise.race([exited, delay(10_000)]);
          if (child.exitCode === null) child.kill("SIGKILL");
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    child.kill("SIGKILL");
    await exited;
    lastError = stderr;
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`prometheus did not start (is it installed? scripts/setup.sh):\n${lastError}`);
}

/** Whether Prometheus answers /-/ready before it exits or READY_WITHIN_MS passes. */
async function ready(url: string, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + READY_WITHIN_MS;
  while (Date.now() < deadline && child.exitCode === null) {
    const ok = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) return true;
    await delay(200);
  }
  return false;
}

/** A port of 127.0.0.1 nothing listens on (the OS's pick, let go again). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
