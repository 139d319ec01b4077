// One rollback meaning (issue 31), over ssh on a lab host: a failed activation leaves no
// generation behind, so the system profile holds only systems that ran confirmed, and
// `nixship rollback` without --to goes to the last system confirmed on the host. The sequence:
// v1, v2, a system whose health check fails (rolled back), one whose switch hangs (rolled back
// at --activation-timeout), v1 again; then rollback ends on v2, not on the hanging system.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { servedBy, setExampleSystems } from "./support/lab-deploy.js";
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

beforeAll(async () => {
  lab = await startSshLab("rb", 1);
});

afterAll(async () => {
  await lab?.down();
});

describe("one rollback meaning over ssh", () => {
  it("failed activations leave no generation, and rollback goes to the last confirmed system", async () => {
    expect((await deploy("web-v1")).code).toBe(0);
    expect((await deploy("web-v2")).code).toBe(0);
    const broken = await deploy("web-broken");
    expect(broken.code).toBe(1);
    const hang = await deploy("web-hang", "--activation-timeout", "5");
    expect(hang.code).toBe(1);
    expect(await servedBy(lab.info, HOST)).toBe("web-v2");
    // Neither failed system is left in the profile, for a rollback or the boot menu to take;
    // and status says its last deploy failed (issue 46).
    expect(await generations(1)).toEqual({ 1: "v1", 2: "v2" });
    expect((await deploy("web-v1")).code).toBe(0);
    expect(await generations()).toEqual({ 1: "v1", 2: "v2", 3: "v1" });
    const back = await lab.nixship(["rollback", "--fleet", lab.fleetFile, "--json"]);
    expect(back.code, back.stderr).toBe(0);
    expect(await servedBy(lab.info, HOST)).toBe("web-v2");
  });
});
