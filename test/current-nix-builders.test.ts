// Builds elsewhere on the Nix users run: a lab of two hosts whose Nix is Debian 13's
// 2.26, one of them a remote builder (ssh-ng://) for a deployer whose own Nix is 2.26 too (in a
// /nix of its own), and a build host (--build-host) for the machine's Nix 2.8: the system is
// built in the builder's store, pushed, and deployed to the other host.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../support/cli.js";
import { makeCurrentNixRoot, nixshipWithCurrentNix } from "../support/current-nix.js";
import { type FreshSystems, freshSystems, setBuildFleet } from "./support/fresh-systems.js";
import { deployEvents, labDeployArgs, servedBy } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let nixRoot: string;
let flake: FreshSystems | undefined;
let builderAddress: string;
const SYSTEMS = ["web-cbuild", "web-chost"] as const;

beforeAll(async () => {
  nixRoot = await makeCurrentNixRoot();
  lab = await startSshLab("cb", 2, { nix: "current" });
  builderAddress = lab.info.hosts[0]?.address ?? "";
  flake = await freshSystems(SYSTEMS);
});

afterAll(async () => {
  await lab?.down();
  await flake?.remove();
  if (nixRoot) await rm(nixRoot, { recursive: true, force: true });
});

function setFleet(system: string, build: object | undefined): Promise<void> {
  return setBuildFleet(
    lab.fleetFile,
    "cb2",
    `path:${(flake as FreshSystems).dir}#${system}`,
    build,
  );
}

async function onBuilder(command: string) {
  return run("ssh", ["-F", join(lab.info.dir, "ssh_config"), "cb1", command]);
}

describe("builds elsewhere, on Nix 2.26", () => {
  it("the builder runs Nix 2.26, nix-daemon too (what ssh-ng:// starts)", async () => {
    const r = await onBuilder("nix --version; nix-daemon --version");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toEqual(["nix (Nix) 2.26.3", "nix-daemon (Nix) 2.26.3"]);
  });

  it("a 2.26 deployer builds on a 2.26 remote builder, pushes and deploys", async () => {
    const clientKey = join(lab.info.dir, "id_ed25519");
    await setFleet("web-cbuild", {
      builders: `ssh-ng://root@${builderAddress} x86_64-linux ${clientKey} 2 1 - - -`,
      maxJobs: 0,
    });
    const r = await nixshipWithCurrentNix(
      nixRoot,
      labDeployArgs(
        lab.info,
        lab.fleetFile,
        join(lab.info.dir, "cache.sec"),
        "--on",
        "cb2",
        "--json",
      ),
      { env: { NIXSHIP_LAB_DIR: join(lab.info.dir, "..") } },
    );
    expect(r.code, r.stderr).toBe(0);
    const done = deployEvents(r).find((e) => e.type === "build-done") as unknown as {
      systems: { path: string }[];
      builtOn?: { builder: string; derivations: number }[];
    };
    expect(done.builtOn?.[0]?.builder).toBe(`ssh-ng://root@${builderAddress}`);
    const path = done.systems[0]?.path ?? "";
    expect((await onBuilder(`nix-store --check-validity ${path}`)).code).toBe(0);
    expect(await servedBy(lab.info, "cb2")).toBe("web-cbuild");
  });

  it("the machine's 2.8 builds on a 2.26 build host, copies back, and deploys", async () => {
    await setFleet("web-chost", undefined);
    const r = await lab.deploy("--on", "cb2", "--build-host", "cb1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/on ssh-ng:\/\/root@cb1; copied back to the deployer for the push/);
    expect(await servedBy(lab.info, "cb2")).toBe("web-chost");
  });
});
