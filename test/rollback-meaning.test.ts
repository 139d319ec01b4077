// One rollback meaning (issue 31), over ssh on a lab host: a failed activation leaves no
// generation behind, so the system profile holds only systems that ran confirmed, and
// `nixship rollback` without --to goes to the last system confirmed on the host. The sequence:
// v1, v2, a system whose health check fails (rolled back), one whose switch hangs (rolled back
// at --activation-timeout), v1 again; then rollback ends on v2, not on the hanging system.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NIXSHIP_BIN, run } from "./support/cli.js";
import { type LabInfo, labDeployArgs, servedBy, setExampleSystems } from "./support/lab-deploy.js";

const LAB = "rb";
const HOST = `${LAB}1`;
let work: string;
let lab: LabInfo;
let fleetFile: string;
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });
const nixship = (args: readonly string[]) =>
  run(process.execPath, [NIXSHIP_BIN, ...args], { env: env() });

async function deploy(system: string, ...extra: string[]) {
  await setExampleSystems(fleetFile, { [HOST]: system });
  return nixship(labDeployArgs(lab, fleetFile, join(lab.dir, "cache.sec"), "--json", ...extra));
}

/** The system profile's generations, as the host reports them: number → system name. */
async function generations(): Promise<Record<number, string>> {
  const r = await nixship(["status", "--fleet", fleetFile, "--json"]);
  const row = (
    JSON.parse(r.stdout) as { hosts: { generations: { generation: number; path: string }[] }[] }
  ).hosts[0];
  return Object.fromEntries(
    (row?.generations ?? []).map((g) => [
      g.generation,
      g.path.replace(/^.*-example-web-system-/, ""),
    ]),
  );
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-rollback-meaning-"));
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json"]);
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as LabInfo;
  fleetFile = join(lab.dir, "nixship.json");
});

afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB]);
  await rm(work, { recursive: true, force: true });
});

describe("one rollback meaning over ssh", () => {
  it("failed activations leave no generation, and rollback goes to the last confirmed system", async () => {
    expect((await deploy("web-v1")).code).toBe(0);
    expect((await deploy("web-v2")).code).toBe(0);
    const broken = await deploy("web-broken");
    expect(broken.code).toBe(1);
    const hang = await deploy("web-hang", "--activation-timeout", "5");
    expect(hang.code).toBe(1);
    expect(await servedBy(lab, HOST)).toBe("web-v2");
    // Neither failed system is left in the profile, for a rollback or the boot menu to take.
    expect(await generations()).toEqual({ 1: "v1", 2: "v2" });
    expect((await deploy("web-v1")).code).toBe(0);
    expect(await generations()).toEqual({ 1: "v1", 2: "v2", 3: "v1" });
    const back = await nixship(["rollback", "--fleet", fleetFile, "--json"]);
    expect(back.code, back.stderr).toBe(0);
    expect(await servedBy(lab, HOST)).toBe("web-v2");
  });
});
