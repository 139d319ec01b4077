// Output a person can read on a lab of 200 real ssh hosts: the deploy's log keeps a
// line per host's result but none of its phases or logs, its summary counts what needs nobody,
// and the plan of one change, with one host key refused, fits in 40 lines and names both hosts.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildExampleSystems } from "./support/example-systems.js";
import { setExampleSystems } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOSTS = 200;
const CHANGED = "bf137";
const REFUSED = "bf50";
let lab: SshLab;

beforeAll(async () => {
  await buildExampleSystems();
  // A 200-host lab comes up in about 25 s on the project's 2-core VM.
  lab = await startSshLab("bf", HOSTS);
  // The lab's health check gives a host 5 s to answer. Here 20 hosts switch at once on the
  // deployer's own cores while other tests run: a host's service, started and answering on the
  // host, waited longer than that for the CPU in one CI run. Its timing is not what this test
  // is about; its output is.
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    policy: { health: { http: { timeout: number }[] } };
  };
  for (const check of doc.policy.health.http) check.timeout = 60;
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}, 300_000);

afterAll(async () => {
  await lab?.down();
}, 300_000);

describe("a lab of 200 hosts", () => {
  it("logs each host's result without its phases, and sums up what needs nobody", async () => {
    // Every host gets web-v1 (the lab's fleet file names it), as the fleet bench deploys.
    const r = await lab.deploy("--parallel", "20", "--canary", "1");
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const lines = r.stderr.split("\n");
    const hostLines = lines.filter((l) => /^bf\d+: /.test(l));
    expect(hostLines).toHaveLength(HOSTS);
    for (const l of hostLines) expect(l).toMatch(/^bf\d+: activated, generation 1 \(/);
    expect(lines).toContain(
      `${HOSTS} hosts (past 20 hosts the summary counts those that need nobody; --json lists each):`,
    );
    expect(lines.some((l) => /^200 +activated +example-web-system-v1 +bf1, bf2, /.test(l))).toBe(
      true,
    );
    expect(lines.some((l) => /^200 activated, 0 failed in /.test(l))).toBe(true);
  }, 300_000);

  it("plans one change among 200 hosts in 40 lines, naming it and a refused host key", async () => {
    await setExampleSystems(lab.fleetFile, { [CHANGED]: "web-v2" });
    // Another host's key in REFUSED's known_hosts line: ssh refuses it, as after a reinstall.
    const knownHosts = join(lab.info.dir, "known_hosts");
    const entries = (await readFile(knownHosts, "utf8")).trimEnd().split("\n");
    const keyOf = (host: string) => {
      const line = entries.find((l) => l.startsWith(`${host},`));
      if (line === undefined) throw new Error(`no ${host} in ${knownHosts}`);
      return line.slice(line.indexOf(" ") + 1);
    };
    const other = keyOf("bf51");
    await writeFile(
      knownHosts,
      `${entries
        .map((l) => (l.startsWith(`${REFUSED},`) ? `${l.slice(0, l.indexOf(" "))} ${other}` : l))
        .join("\n")}\n`,
    );

    const r = await lab.nixship(["plan", "--fleet", lab.fleetFile]);
    expect(r.code, r.stderr.slice(-3000)).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines.length, r.stdout).toBeLessThanOrEqual(40);
    const group = (count: number, pattern: string) =>
      lines.findIndex((l) => new RegExp(`^${count} +${pattern}`).test(l));
    const skip = group(198, "example-web-system-v1 +example-web-system-v1 +skip +- +up to date$");
    expect(skip, r.stdout).toBeGreaterThan(0);
    const change = group(1, "example-web-system-v1 +example-web-system-v2 +switch +2 paths");
    expect(lines[change + 1], r.stdout).toBe(`    ${CHANGED}`);
    const refused = group(1, "\\? +example-web-system-v1 +unreachable +- +host key refused$");
    expect(lines[refused + 1], r.stdout).toBe(`    ${REFUSED}`);
    // And in full, with what ssh said.
    expect(lines).toContain("1 host needs a person:");
    expect(
      lines.some((l) =>
        new RegExp(`^  ${REFUSED} +\\? .* unreachable +- +ssh: Host key verification failed`).test(
          l,
        ),
      ),
      r.stdout,
    ).toBe(true);
    expect(lines).toContain(
      `1 of ${HOSTS} hosts changes; 2 paths, 14.2 kB to transfer; 1 unreachable`,
    );

    // --json stays complete: every host, each with its own row.
    const json = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--json"]);
    const plan = JSON.parse(json.stdout) as { hosts: { host: string; action: string }[] };
    expect(plan.hosts).toHaveLength(HOSTS);
    expect(plan.hosts.find((h) => h.host === CHANGED)?.action).toBe("activate");
    expect(plan.hosts.find((h) => h.host === REFUSED)?.action).toBe("unreachable");
  }, 300_000);
});
