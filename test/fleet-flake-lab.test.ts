// A lab fleet written only in a flake (no fleet file names its hosts): three ssh lab hosts,
// each a configuration that says how it is reached through nixosModules.deployment (its
// address, ssh alias, tags and, for one, a policy of its own), the roles' policies in the
// fleet. The plan shows each host's checks, role's and host's; a deploy found in the current
// directory puts v1 on them, one named by `path:DIR#nixship` v2; status has them in step; and
// the rollback of the v2 rollout puts v1 back.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import { writeFleetFlake } from "./support/fleet-flake.js";
import { servedBy, summaryOf } from "./support/lab-deploy.js";
import { statusRows, undoPlanOf } from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const LAB = "nf";
const H = (i: number) => `${LAB}${i}`;
const API_CHECK = { url: "http://{address}/health", expectStatus: 200, timeout: 3 };
const WORKER_CHECK = { run: "test -s /run/current-system/nixos-version", timeout: 3 };
/** ${H(1)}'s own check, from its configuration's nixship.deployment.policy. */
const HOST_CHECK = { run: "test -x /run/current-system/bin/switch-to-configuration", timeout: 3 };

let lab: SshLab;
let dir: string;
let labFleet: {
  cache: { url: string; publicKeys: string[] };
  ssh: { configFile: string; knownHosts: string };
};

/** A Nix value as text: JSON is Nix but for `${` in strings. */
const nix = (value: unknown) => JSON.stringify(value).replaceAll("${", "\\${");

/** The flake: each host's configuration on `system` (an example system's name). */
async function writeFlake(system: string): Promise<void> {
  const configuration = (i: number, tags: string[], policy?: object) => {
    const host = lab.info.hosts[i - 1];
    const deployment = {
      address: host?.address,
      sshHost: host?.name,
      tags,
      ...(policy === undefined ? {} : { policy }),
    };
    return `      nixosConfigurations.${H(i)} = nixosSystem {
        toplevel = examples.${system};
        modules = [ deployment { nixship.deployment = builtins.fromJSON ${nix(JSON.stringify(deployment))}; } ];
      };`;
  };
  await writeFleetFlake(
    dir,
    `${configuration(1, ["api"], { health: { commands: [HOST_CHECK] } })}
${configuration(2, ["api"])}
${configuration(3, ["worker"])}
      nixship = fleetLib.fleetFromConfigurations {
        configurations = self.nixosConfigurations;
        cache = builtins.fromJSON ${nix(JSON.stringify(labFleet.cache))};
        ssh = { configFile = ${nix(labFleet.ssh.configFile)}; knownHosts = ${nix(labFleet.ssh.knownHosts)}; };
        policy.canary = 0;
        policies."@api".health.http = [ (builtins.fromJSON ${nix(JSON.stringify(API_CHECK))}) ];
        policies."@worker".health.commands = [ (builtins.fromJSON ${nix(JSON.stringify(WORKER_CHECK))}) ];
      };`,
  );
}

/** The lab's key and served cache: what every deploy and rollback here takes. */
const cacheArgs = () => [
  "--key",
  join(lab.info.dir, "cache.sec"),
  "--serve-cache",
  `10.231.${lab.info.number}.1:0`,
  "--json",
];

beforeAll(async () => {
  lab = await startSshLab(LAB, 3);
  labFleet = JSON.parse(await readFile(lab.fleetFile, "utf8"));
  dir = await mkdtemp(join(tmpdir(), "nixship-fleet-flake-lab-"));
  await writeFlake("web-v1");
}, 120_000);

afterAll(async () => {
  await lab?.down();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe("a lab fleet written in a flake", () => {
  it("plans each host with its role's checks and its own", async () => {
    const r = await nixship(["plan", "--fleet", `${dir}#nixship`, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const hosts = (JSON.parse(r.stdout) as { hosts: { host: string; checks: unknown }[] }).hosts;
    expect(Object.fromEntries(hosts.map((h) => [h.host, h.checks]))).toEqual({
      [H(1)]: { http: [API_CHECK], commands: [HOST_CHECK] },
      [H(2)]: { http: [API_CHECK], commands: [] },
      [H(3)]: { http: [], commands: [WORKER_CHECK] },
    });
  });

  it("deploys from the flake in the current directory, then from path:DIR#nixship", async () => {
    const first = await nixship(["deploy", ...cacheArgs()], { cwd: dir });
    expect(first.code, first.stderr).toBe(0);
    expect(Object.values(summaryOf(first)).map((o) => o.status)).toEqual([
      "activated",
      "activated",
      "activated",
    ]);
    for (const i of [1, 2, 3]) expect(await servedBy(lab.info, H(i))).toBe("web-v1");

    await writeFlake("web-v2");
    const second = await nixship(["deploy", "--fleet", `path:${dir}#nixship`, ...cacheArgs()]);
    expect(second.code, second.stderr).toBe(0);
    for (const i of [1, 2, 3]) expect(await servedBy(lab.info, H(i))).toBe("web-v2");

    const { code, rows } = await statusRows(
      (args) => nixship(args),
      `${dir}#nixship`,
      "--on",
      `${H(1)},@worker`,
    );
    expect(code).toBe(0);
    expect([...rows.keys()].sort()).toEqual([H(1), H(3)]);
    for (const row of rows.values()) expect(row.inStep, row.host).toBe(true);
  });

  it("rolls the last rollout back", async () => {
    const r = await nixship(["rollback", "--fleet", `${dir}#nixship`, ...cacheArgs()]);
    expect(r.code, r.stderr).toBe(0);
    expect(
      undoPlanOf(r.stdout)
        .steps.map((s) => s.host)
        .sort(),
    ).toEqual([H(1), H(2), H(3)]);
    for (const i of [1, 2, 3]) expect(await servedBy(lab.info, H(i))).toBe("web-v1");
  });
});
