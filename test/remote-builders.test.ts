// Builds elsewhere, on a lab of two hosts with the real Nix and sshd: host 1 is a
// remote builder (ssh-ng://root@ADDRESS, its own store) for systems the deployer has never
// built, with the deployer building nothing itself (build.maxJobs 0); then a build host
// (--build-host) whose closures come back to the deployer for the push; a builder that is down
// or whose host key is wrong fails naming it; doctor reports the builders.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildOnHost } from "../src/cache/build-host.js";
import { resolveBuildPlace } from "../src/deploy/build-place.js";
import { loadFleet } from "../src/fleet/load-fleet.js";
import { run } from "../support/cli.js";
import {
  derivationOf,
  type FreshSystems,
  freshSystems,
  setBuildFleet,
} from "./support/fresh-systems.js";
import { deployEvents, servedBy } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let flake: FreshSystems | undefined;
let builderAddress: string;

/** Systems no store has yet: each test's own, fresh per run (their version holds the nonce). */
const SYSTEMS = ["web-remote", "web-buildhost", "web-down", "web-badkey", "web-hung"] as const;

beforeAll(async () => {
  lab = await startSshLab("rb", 2);
  builderAddress = lab.info.hosts[0]?.address ?? "";
  flake = await freshSystems(SYSTEMS);
});

afterAll(async () => {
  await lab?.down();
  await flake?.remove();
});

/** Points rb2 at one of the fresh systems and sets the fleet's `build` section. */
function setFleet(system: string, build: object | undefined): Promise<void> {
  return setBuildFleet(
    lab.fleetFile,
    "rb2",
    `path:${(flake as FreshSystems).dir}#${system}`,
    build,
  );
}

const clientKey = () => join(lab.info.dir, "id_ed25519");
const builderLine = (address: string, extra = "- - -") =>
  `ssh-ng://root@${address} x86_64-linux ${clientKey()} 2 1 ${extra}`;

/** Whether a path is valid in lab host rb1's own store. */
async function inBuilderStore(path: string): Promise<boolean> {
  const r = await run("ssh", [
    "-F",
    join(lab.info.dir, "ssh_config"),
    "rb1",
    `nix-store --check-validity ${path}`,
  ]);
  return r.code === 0;
}

describe("builds elsewhere", () => {
  it("builds on a remote builder over ssh-ng, then pushes and deploys to the other host", async () => {
    await setFleet("web-remote", { builders: builderLine(builderAddress), maxJobs: 0 });
    const r = await lab.deploy("--on", "rb2", "--json");
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    const done = events.find((e) => e.type === "build-done") as unknown as {
      systems: { path: string }[];
      builtOn?: { builder: string; derivations: number }[];
    };
    const builder = `ssh-ng://root@${builderAddress}`;
    expect(done.builtOn?.find((b) => b.builder === builder)?.derivations).toBeGreaterThanOrEqual(2);
    expect(events.find((e) => e.type === "build-start")).toMatchObject({ builders: [builder] });
    const path = done.systems[0]?.path ?? "";
    expect(path).toMatch(/-example-web-system-remote$/);
    // Built in the builder's own store, not only copied there: its output is valid on rb1.
    expect(await inBuilderStore(path)).toBe(true);
    expect(await servedBy(lab.info, "rb2")).toBe("web-remote");
  });

  it("--build-host: builds in the host's store, copies back and says so, then deploys", async () => {
    await setFleet("web-buildhost", undefined);
    const r = await lab.deploy("--on", "rb2", "--build-host", "rb1");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /built 1 system in .* on ssh-ng:\/\/root@rb1; copied back to the deployer for the push \(the cache file:\/\/\S+ is not an object store ssh-ng:\/\/root@rb1 can write\)/,
    );
    const built = await lab.nixship(["build", "--fleet", lab.fleetFile, "--on", "rb2", "--json"]);
    const path = (JSON.parse(built.stdout) as { hosts: { rb2: string } }).hosts.rb2;
    expect(await inBuilderStore(path)).toBe(true);
    expect(await servedBy(lab.info, "rb2")).toBe("web-buildhost");
  });

  it("a build host whose nix-daemon hangs behind a live ssh: the copy to it is stopped once Nix has said nothing for its idle limit, naming the host", async () => {
    // The daemon ssh-ng starts there (remote-program) takes the connection and never answers.
    const hang = await run("ssh", [
      "-F",
      join(lab.info.dir, "ssh_config"),
      "rb1",
      "printf '#!/bin/sh\\nexec sleep 600\\n' > /root/hung-daemon && chmod +x /root/hung-daemon",
    ]);
    expect(hang.code, hang.stderr).toBe(0);
    await setFleet("web-hung", undefined);
    const where = await resolveBuildPlace(await loadFleet(lab.fleetFile), "rb1");
    const drv = await derivationOf((flake as FreshSystems).dir, "web-hung");
    const hung = `${where.host}?remote-program=/root/hung-daemon`;
    const started = Date.now();
    const error = await buildOnHost([drv], hung, where.place, { copyIdleMs: 3000 }).catch(
      (err: unknown) => err,
    );
    expect(error).toMatchObject({
      code: "nix-failed",
      message: expect.stringMatching(
        /^'nix --extra-experimental-features nix-command flakes copy --derivation --to ssh-ng:\/\/root@rb1\?remote-program=\/root\/hung-daemon' said nothing for 3 s, and was stopped \(ssh-ng:\/\/root@rb1\?remote-program=\/root\/hung-daemon\)$/,
      ),
      hint: expect.stringContaining(
        "check ssh-ng://root@rb1?remote-program=/root/hung-daemon (its nix-daemon",
      ),
    });
    // Stopped by the idle limit, not by anything slower (a test's own timeout is minutes).
    expect(Date.now() - started).toBeLessThan(60_000);
    // The deployer's Nix (and its ssh) is gone with it.
    const left = await run("pgrep", ["-f", "remote-program=/root/hung-daemon"]);
    expect(left.stdout.trim()).toBe("");
  });

  it("a builder that is down fails the build, naming it and what failed", async () => {
    const down = builderAddress.replace(/\.\d+$/, ".250");
    await setFleet("web-down", { builders: builderLine(down), maxJobs: 0 });
    const r = await lab.deploy("--on", "rb2");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`error: builder ssh-ng://root@${down} cannot be reached:`);
    expect(r.stderr).toMatch(
      /ssh: connect to host .* port 22: (No route to host|Connection timed out)/,
    );
    expect(r.stderr).toContain("hint: check that the builder is up");
    expect(await servedBy(lab.info, "rb2")).toBe("web-buildhost");
  });

  it("a builder whose host key is not the known one is refused, naming it", async () => {
    const otherKey = Buffer.from(
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C8okWi0dh2l9GKJl",
    ).toString("base64");
    await setFleet("web-badkey", {
      builders: builderLine(builderAddress, `- - ${otherKey}`),
      maxJobs: 0,
    });
    const r = await lab.deploy("--on", "rb2");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error: builder ssh-ng://root@${builderAddress} refused: its host key is not the one known for it`,
    );
    expect(r.stderr).toContain("Host key verification failed.");
  });

  it("doctor reports each builder: one that answers, and one that is down", async () => {
    const down = builderAddress.replace(/\.\d+$/, ".250");
    await setFleet("web-remote", {
      builders: `${builderLine(builderAddress)} ; ${builderLine(down)}`,
      maxJobs: 0,
    });
    const r = await lab.nixship(["doctor", "--fleet", lab.fleetFile, "--on", "rb2", "--json"]);
    expect(r.code).toBe(1);
    const checks = (JSON.parse(r.stdout) as { checks: Record<string, string>[] }).checks;
    const of = (area: string) =>
      Object.fromEntries(checks.filter((c) => c.area === area).map((c) => [c.name, c.status]));
    expect(of(`builder ssh-ng://root@${builderAddress}`)).toEqual({
      ssh: "ok",
      nix: "ok",
      "nix-daemon": "ok",
      systems: "ok",
    });
    expect(of(`builder ssh-ng://root@${down}`)).toEqual({ ssh: "fail" });
    const systems = checks.find((c) => c.name === "system x86_64-linux");
    expect(systems?.status).toBe("ok");
    expect(systems?.detail).toContain(`built by ssh-ng://root@${builderAddress}`);
    const nix = checks.find(
      (c) => c.area === `builder ssh-ng://root@${builderAddress}` && c.name === "nix",
    );
    expect(nix?.detail).toMatch(/Nix\) 2\.\d+/);
  });
});
