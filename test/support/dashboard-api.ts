// A dashboard run for one question: started on a free loopback port over a fleet file, asked
// one API path, and stopped.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { NIXSHIP_BIN } from "../../support/cli.js";

/** The JSON the dashboard of `fleetFile` answers at `path` (`/api/hosts`, …). */
export async function dashboardApi(fleetFile: string, path: string): Promise<unknown> {
  return JSON.parse(await dashboardText(fleetFile, path));
}

/** The text the dashboard of `fleetFile` answers at `path` (`/metrics`, a page, …). */
export async function dashboardText(fleetFile: string, path: string): Promise<string> {
  const child = spawn(
    process.execPath,
    [NIXSHIP_BIN, "dashboard", "--fleet", fleetFile, "--listen", "127.0.0.1:0"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("the dashboard did not start in 30 s")),
        30_000,
      );
      const lines = createInterface({ input: child.stderr });
      lines.on("line", (line) => {
        const found = line.match(/http:\/\/127\.0\.0\.1:\d+/);
        if (found) {
          clearTimeout(timer);
          resolve(found[0]);
        }
      });
      child.once("exit", (code) => reject(new Error(`the dashboard exited with ${code}`)));
    });
    const r = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(30_000) });
    return await r.text();
  } finally {
    child.kill("SIGTERM");
  }
}

/** The dashboard's `/api/hosts` row of `host`. */
export async function dashboardHost(
  fleetFile: string,
  host: string,
): Promise<Record<string, unknown>> {
  const body = (await dashboardApi(fleetFile, "/api/hosts")) as {
    hosts: Record<string, unknown>[];
  };
  const row = body.hosts.find((h) => h.host === host);
  if (row === undefined) throw new Error(`no ${host} in ${JSON.stringify(body).slice(0, 500)}`);
  return row;
}
