// The move-over on a lab: colmena's tutorial hive, its nodes' targetHost the lab's hosts (ssh
// aliases of the ssh_config colmena is given in SSH_CONFIG_FILE), converted by `init --from
// colmena` into the fleet in the flake, deploys each node's own system to its host; deploy-rs's
// README flake, converted into a fleet file, deploys the configurations its profiles activate.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship } from "../support/cli.js";
import {
  addOutput,
  tutorialHive,
  writeDeployRsFlake,
  writeFlakeWith,
} from "./support/foreign-flakes.js";
import { servedBy, summaryOf } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const LAB = "mv";
const H = (i: number) => `${LAB}${i}`;

let lab: SshLab;
let work: string;
let labFleet: { cache: { url: string }; ssh: { configFile: string; knownHosts: string } };

/** init --from TOOL in `dir`, with the lab's cache and signing key. */
async function convert(
  dir: string,
  tool: string,
  format: string,
  env: Record<string, string> = {},
) {
  const r = await nixship(
    [
      "init",
      dir,
      "--from",
      tool,
      "--format",
      format,
      "--cache",
      labFleet.cache.url,
      "--key-out",
      join(lab.info.dir, "cache.sec"),
      "--json",
    ],
    { env },
  );
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { fleet: string; outputLine: string | null };
}

const deployArgs = () => [
  "--key",
  join(lab.info.dir, "cache.sec"),
  "--serve-cache",
  `10.231.${lab.info.number}.1:0`,
  "--json",
];

beforeAll(async () => {
  lab = await startSshLab(LAB, 2);
  labFleet = JSON.parse(await readFile(lab.fleetFile, "utf8"));
  work = await mkdtemp(join(tmpdir(), "nixship-init-from-lab-"));
}, 120_000);

afterAll(async () => {
  await lab?.down();
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

describe("a fleet moved over to nixship, on a lab", () => {
  it("deploys a colmena hive's nodes, each its own system", async () => {
    const dir = await mkdtemp(join(work, "colmena-"));
    await writeFlakeWith(dir, "");
    await writeFile(join(dir, "hive.nix"), tutorialHive({ hostA: H(1), hostB: H(2) }));
    const out = await convert(dir, "colmena", "nix", { SSH_CONFIG_FILE: labFleet.ssh.configFile });
    await addOutput(dir, out.outputLine as string);
    const r = await nixship(["deploy", "--fleet", `${dir}#nixship`, ...deployArgs()]);
    expect(r.code, r.stderr).toBe(0);
    expect(Object.values(summaryOf(r)).map((o) => o.status)).toEqual(["activated", "activated"]);
    // host-a on the lab's first host runs host-a's system; host-b (no hostName: NixOS's
    // "nixos") on the second.
    expect(await servedBy(lab.info, H(1))).toBe("host-a");
    expect(await servedBy(lab.info, H(2))).toBe("nixos");
  });

  it("deploys deploy-rs's nodes, each the configuration its system profile activates", async () => {
    const dir = await mkdtemp(join(work, "deploy-rs-"));
    await writeDeployRsFlake(dir, {
      "some-random-system": { hostname: H(1), extra: "        confirmTimeout = 20;" },
      "other-system": { hostname: H(2) },
    });
    const out = await convert(dir, "deploy-rs", "json");
    // What the report asks of the user: ssh's settings for the hosts (here, the lab's).
    const fleet = JSON.parse(await readFile(out.fleet, "utf8"));
    fleet.ssh = labFleet.ssh;
    await writeFile(out.fleet, JSON.stringify(fleet));
    const r = await nixship(["deploy", "--fleet", out.fleet, ...deployArgs()]);
    expect(r.code, r.stderr).toBe(0);
    expect(Object.values(summaryOf(r)).map((o) => o.status)).toEqual(["activated", "activated"]);
    expect(await servedBy(lab.info, H(1))).toBe("some-random-system");
    expect(await servedBy(lab.info, H(2))).toBe("other-system");
  });
});
