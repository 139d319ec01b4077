// What the lab deploy tests share: a lab's fleet file to point hosts at example systems, the
// deploy command line that serves the lab's cache on its bridge, what a host serves (also once
// it is up after a reboot), and the
// NDJSON events of a `--json` run, and the logins a host's sshd accepted.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type CliRun, run } from "../../support/cli.js";
import { EXAMPLES_DIR } from "./example-systems.js";

export interface LabInfo {
  readonly number: number;
  readonly dir: string;
  readonly hosts: readonly { readonly name: string; readonly address: string }[];
}

export type DeployEventLine = { readonly type: string; readonly [k: string]: unknown };

/**
 * Logins the sshd of lab host `host` accepted so far (one per SSH handshake), of `user` or of
 * any user.
 */
export async function sshdLogins(labDir: string, host: string, user?: string): Promise<number> {
  const log = await readFile(join(labDir, "hosts", host, "sshd.log"), "utf8");
  const said = `Accepted publickey for ${user === undefined ? "" : `${user} `}`;
  return log.split("\n").filter((l) => l.includes(said)).length;
}

/** Points hosts of a fleet file at example systems (`{web1: "web-v2"}`). */
export async function setExampleSystems(
  fleetFile: string,
  systems: Readonly<Record<string, string>>,
): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  for (const [host, name] of Object.entries(systems)) {
    const entry = doc.hosts[host];
    if (entry === undefined) throw new Error(`no host ${host} in ${fleetFile}`);
    entry.system = `path:${EXAMPLES_DIR}#${name}`;
  }
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
}

/** Where a lab's deploy serves the fleet's cache: the lab's bridge, any free port. */
export function labServeCache(lab: Pick<LabInfo, "number">): string {
  return `10.231.${lab.number}.1:0`;
}

/** `nixship deploy` of a lab fleet, its cache served to the hosts on the lab's bridge. */
export function labDeployArgs(
  lab: LabInfo,
  fleetFile: string,
  keyFile: string,
  ...extra: string[]
): string[] {
  return [
    "deploy",
    "--fleet",
    fleetFile,
    "--key",
    keyFile,
    "--serve-cache",
    labServeCache(lab),
    ...extra,
  ];
}

/** The name a lab host's web service answers with (its system's name), or "(nothing)". */
export async function servedBy(lab: Pick<LabInfo, "hosts">, host: string): Promise<string> {
  const address = lab.hosts.find((h) => h.name === host)?.address;
  if (address === undefined) throw new Error(`no host ${host} in the lab`);
  const r = await run("curl", ["-s", "--max-time", "5", `http://${address}/version`]);
  return r.stdout ? (JSON.parse(r.stdout) as { name: string }).name : "(nothing)";
}

/**
 * What a lab host serves once its web service is up after a reboot: `lab reboot` returns when
 * sshd listens, and the system's init starts its services in the background before that (as
 * NixOS's does), so on a busy machine the service may not listen yet. Asks every half second for
 * at most `seconds`, then answers what the host served last ("(nothing)": still not up).
 */
export async function servedAfterBoot(
  lab: Pick<LabInfo, "hosts">,
  host: string,
  seconds = 30,
): Promise<string> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const name = await servedBy(lab, host);
    if (name !== "(nothing)" || Date.now() >= deadline) return name;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The NDJSON events a `--json` deploy printed. */
export function deployEvents(r: CliRun | string): DeployEventLine[] {
  const stdout = typeof r === "string" ? r : r.stdout;
  return stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as DeployEventLine);
}

/** The outcome of every host in a deploy's --json summary. */
export function summaryOf(r: CliRun): Record<string, Record<string, unknown>> {
  const summary = deployEvents(r).find((e) => e.type === "summary") as
    | { ok: boolean; results: { host: string; outcome: Record<string, unknown> }[] }
    | undefined;
  if (!summary) throw new Error(`no summary; stderr:\n${r.stderr}`);
  return Object.fromEntries(summary.results.map((x) => [x.host, x.outcome]));
}
