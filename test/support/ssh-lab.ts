// A lab of ssh hosts for one test file: `lab up N` in a directory of the test's own, the
// lab's fleet file and cache key, nixship run against it, and everything removed at the end.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { type CliRun, NIXSHIP_BIN, run } from "../../support/cli.js";
import { type LabInfo, labDeployArgs, labServeCache } from "./lab-deploy.js";

export interface SshLab {
  readonly name: string;
  readonly info: LabInfo;
  readonly fleetFile: string;
  /** nixship, with the environment that points `nixship lab` at this lab. */
  readonly nixship: (args: readonly string[]) => Promise<CliRun>;
  /** `nixship deploy` of the lab's fleet, its cache served on the lab's bridge. */
  readonly deploy: (...extra: string[]) => Promise<CliRun>;
  /** `nixship plan` of the lab's fleet, for the deploy that serves its cache as `deploy` does. */
  readonly plan: (...extra: string[]) => Promise<CliRun>;
  /** Takes the lab down and removes its directory. */
  readonly down: () => Promise<void>;
}

export async function startSshLab(
  name: string,
  hosts: number,
  options: {
    readonly bootCounting?: number;
    /** `lab up --nix`: the hosts' Nix (`current`: Debian 13's 2.26). */
    readonly nix?: string;
  } = {},
): Promise<SshLab> {
  const work = await mkdtemp(join(tmpdir(), `nixship-lab-${name}-`));
  const env = { NIXSHIP_LAB_DIR: join(work, "labs") };
  const nixship = (args: readonly string[]) =>
    run(process.execPath, [NIXSHIP_BIN, ...args], { env });
  const counting =
    options.bootCounting === undefined ? [] : ["--boot-counting", String(options.bootCounting)];
  const nix = options.nix === undefined ? [] : ["--nix", options.nix];
  const up = await nixship([
    "lab",
    "up",
    String(hosts),
    "--name",
    name,
    "--json",
    ...counting,
    ...nix,
  ]);
  expect(up.code, up.stderr).toBe(0);
  const info = JSON.parse(up.stdout) as LabInfo;
  const fleetFile = join(info.dir, "nixship.json");
  return {
    name,
    info,
    fleetFile,
    nixship,
    deploy: (...extra) =>
      nixship(labDeployArgs(info, fleetFile, join(info.dir, "cache.sec"), ...extra)),
    plan: (...extra) =>
      nixship(["plan", "--fleet", fleetFile, "--serve-cache", labServeCache(info), ...extra]),
    down: async () => {
      await nixship(["lab", "down", "--name", name]);
      await rm(work, { recursive: true, force: true });
    },
  };
}
