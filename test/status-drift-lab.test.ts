// Drift on a real lab host over ssh: a host switched by hand (`nixship lab exec`,
// as nixos-rebuild would) is shown drifting by `nixship status` and is not in step, while
// every system nixship left there (deploys, and rollbacks, twice over) is not drift.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliRun } from "../support/cli.js";
import { buildExampleSystems } from "./support/example-systems.js";
import { setExampleSystems } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOST = "sd1";
let lab: SshLab;
let systems: Awaited<ReturnType<typeof buildExampleSystems>>;

interface Row {
  readonly inStep: boolean;
  readonly current?: string;
  readonly drift?: { readonly running: string; readonly expected: readonly string[] };
}

async function status(): Promise<{ r: CliRun; row: Row }> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
  return { r, row: (JSON.parse(r.stdout) as { hosts: Row[] }).hosts[0] as Row };
}

async function deploy(system: "web-v1" | "web-v2" | "web-v3"): Promise<void> {
  await setExampleSystems(lab.fleetFile, { [HOST]: system });
  const r = await lab.deploy();
  expect(r.code, r.stderr).toBe(0);
}

beforeAll(async () => {
  systems = await buildExampleSystems();
  lab = await startSshLab("sd", 1);
});

afterAll(async () => {
  await lab?.down();
});

describe("drift on an ssh host", () => {
  it("deploys and rollbacks are not drift; a switch by hand is, until nixship deploys again", async () => {
    for (const system of ["web-v1", "web-v2", "web-v3"] as const) await deploy(system);
    expect((await status()).r.code).toBe(0);
    // Twice back a generation: each rollback leaves a record of the system it went back to.
    for (const back of ["web-v2", "web-v1"] as const) {
      const r = await lab.nixship(["rollback", "--fleet", lab.fleetFile, "--on", HOST]);
      expect(r.code, r.stderr).toBe(0);
      const { r: s, row } = await status();
      expect(s.code, s.stdout).toBe(0);
      expect(row.current).toBe(systems[back]);
      expect(row).not.toHaveProperty("drift");
    }

    // Someone switches the host by hand to a system nixship did not leave there now.
    const v3 = systems["web-v3"];
    const hand = await lab.nixship([
      ...["lab", "exec", HOST, "--", "sh", "-c"],
      `nix-env -p /nix/var/nix/profiles/system --set ${v3} && ${v3}/bin/switch-to-configuration switch`,
    ]);
    expect(hand.code, hand.stderr).toBe(0);
    const drifted = await status();
    expect(drifted.r.code).toBe(1);
    // What nixship left: web-v1, and web-v2, which it ran before (its record keeps it).
    expect(drifted.row).toMatchObject({
      inStep: false,
      drift: { running: v3, expected: [systems["web-v1"], systems["web-v2"]] },
    });
    const table = await lab.nixship(["status", "--fleet", lab.fleetFile]);
    expect(table.code).toBe(1);
    expect(table.stdout).toMatch(
      new RegExp(
        `^${HOST}\\s+ssh\\s+\\S+-v3\\s+\\d+\\s+drifting\\s+runs \\S+-v3, not what nixship left on it \\(\\S+-v1 or \\S+-v2\\)`,
        "m",
      ),
    );

    // A deploy of what it runs makes it nixship's again.
    await deploy("web-v3");
    const again = await status();
    expect(again.r.code, again.r.stdout).toBe(0);
    expect(again.row).not.toHaveProperty("drift");
  });
});
