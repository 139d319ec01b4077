// One rollback meaning, over ssh on a lab host: a failed activation leaves no
// generation behind, so the system profile holds only systems that ran confirmed, and
// `nixship rollback` without --to goes to the last system confirmed on the host. The sequence:
// v1, v2, a system whose health check fails (rolled back), one whose switch hangs (rolled back
// at --activation-timeout), v1 again; then rollback ends on v2, not on the hanging system; and
// a rollback --to a generation whose switch fails goes back to v2, where it was.
// Generation numbers are never made twice on a host: v1 again is generation 5, one
// past the failed systems' 3 and 4, and each number names one system in the host's history.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliRun } from "../support/cli.js";
import { deployEvents, servedBy, setExampleSystems } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOST = "rb1";
let lab: SshLab;

async function deploy(system: string, ...extra: string[]) {
  await setExampleSystems(lab.fleetFile, { [HOST]: system });
  return lab.deploy("--json", ...extra);
}

/**
 * The system profile's generations, as the host reports them: number → system name; `status`
 * exits `code` (1 while the host's last deploy failed: it is not in step).
 */
async function generations(code: 0 | 1 = 0): Promise<Record<number, string>> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
  expect(r.code, r.stderr).toBe(code);
  const row = (
    JSON.parse(r.stdout) as {
      hosts: {
        reachable?: boolean;
        error?: string;
        generations: { generation: number; path: string }[];
      }[];
    }
  ).hosts[0];
  // A host that did not answer has no generations to compare: say why instead.
  expect(row?.reachable, row?.error).toBe(true);
  return Object.fromEntries(
    (row?.generations ?? []).map((g) => [
      g.generation,
      g.path.replace(/^.*-example-web-system-/, ""),
    ]),
  );
}

/** Each generation the deploy made on the host, as the host logged it: number → system name. */
function generationsMade(r: CliRun): [number, string][] {
  return deployEvents(r).flatMap((e) => {
    const m =
      e.type === "host-log"
        ? /generation (\d+) of \/nix\/var\/nix\/profiles\/system: \/nix\/store\/[a-z0-9]{32}-example-web-system-(\S+)$/.exec(
            e.line as string,
          )
        : null;
    return m === null ? [] : [[Number(m[1]), m[2] as string]];
  });
}

/** The host's stored record: its generation and the system it runs. */
async function recorded(): Promise<{ generation: number | null; runs: string }> {
  const r = await lab.nixship(["status", "--fleet", lab.fleetFile, "--stored", "--json"]);
  const row = (
    JSON.parse(r.stdout) as { hosts: { generation: number | null; current: string | null }[] }
  ).hosts[0];
  return {
    generation: row?.generation ?? null,
    runs: (row?.current ?? "").replace(/^.*-example-web-system-/, ""),
  };
}

beforeAll(async () => {
  lab = await startSshLab("rb", 1);
});

afterAll(async () => {
  await lab?.down();
});

describe("one rollback meaning over ssh", () => {
  it("failed activations leave no generation, and rollback goes to the last confirmed system", async () => {
    const made: [number, string][] = [];
    const v1 = await deploy("web-v1");
    expect(v1.code, v1.stderr).toBe(0);
    made.push(...generationsMade(v1));
    const v2 = await deploy("web-v2");
    expect(v2.code, v2.stderr).toBe(0);
    made.push(...generationsMade(v2));
    const broken = await deploy("web-broken");
    expect(broken.code).toBe(1);
    made.push(...generationsMade(broken));
    expect(await recorded()).toEqual({ generation: 2, runs: "v2" });
    const hang = await deploy("web-hang", "--activation-timeout", "5");
    expect(hang.code).toBe(1);
    made.push(...generationsMade(hang));
    expect(await servedBy(lab.info, HOST)).toBe("web-v2");
    // Neither failed system is left in the profile, for a rollback or the boot menu to take;
    // and status says its last deploy failed.
    expect(await generations(1)).toEqual({ 1: "v1", 2: "v2" });
    const again = await deploy("web-v1");
    expect(again.code, again.stderr).toBe(0);
    made.push(...generationsMade(again));
    // One past the highest number the host ever made, not one past the highest it keeps: the
    // failed systems had 3 and 4, and each number names one system in the host's history.
    expect(await generations()).toEqual({ 1: "v1", 2: "v2", 5: "v1" });
    expect(made).toEqual([
      [1, "v1"],
      [2, "v2"],
      [3, "broken"],
      [4, "hang"],
      [5, "v1"],
    ]);
    expect(await recorded()).toEqual({ generation: 5, runs: "v1" });
    const back = await lab.nixship(["rollback", "--fleet", lab.fleetFile, "--on", HOST, "--json"]);
    expect(back.code, back.stderr).toBe(0);
    expect(await servedBy(lab.info, HOST)).toBe("web-v2");
    expect(await recorded()).toEqual({ generation: 2, runs: "v2" });

    // A generation whose switch hangs (as one nixos-rebuild made could): a rollback --to it
    // is stopped at its timeout, and the host goes back to the generation it was on, its
    // service running again.
    const onHost = (command: string) =>
      lab.nixship(["lab", "exec", "--name", lab.name, HOST, "--", "sh", "-c", command]);
    const made6 = await onHost(
      "p=/nix/var/nix/profiles/system; nix-env -p $p --set $(ls -d /nix/store/*-example-web-system-hang) && nix-env -p $p --switch-generation 2 && readlink $p",
    );
    expect(made6.stdout.trim(), made6.stderr).toBe("system-2-link");
    const failed = await lab.nixship([
      "rollback",
      "--fleet",
      lab.fleetFile,
      "--on",
      HOST,
      "--to",
      "6",
      "--activation-timeout",
      "5",
    ]);
    expect(failed.code, failed.stderr).toBe(1);
    expect(failed.stdout).toMatch(
      /switching to generation 6 ran past the activation timeout of 5s; stopped it; back on generation 2 \(\/nix\/store\/[a-z0-9]{32}-example-web-system-v2\)/,
    );
    expect(await servedBy(lab.info, HOST)).toBe("web-v2");
    expect((await onHost("readlink /nix/var/nix/profiles/system")).stdout.trim()).toBe(
      "system-2-link",
    );
    expect(await recorded()).toEqual({ generation: 2, runs: "v2" });
  });
});
