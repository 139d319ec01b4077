// The rollout as the unit of truth, on three ssh lab hosts: v1, then v2, then v3 with
// --skip-unreachable while host 3's link is down. Host 3 comes back on v2: `status` (live and
// --stored) and the dashboard call it behind, naming the rollout that skipped it, and exit 1;
// a fleet rollback undoes the v3 rollout alone (all three on v2, host 3 named as left where it
// is), a second fleet rollback steps back to the v2 rollout (all three on v1), and undoing a
// rollout that changed no host (host 3 alone, off the network) records it undone. A host that
// failed in a rollout and went back by itself is in step once that rollout is undone. A host
// whose deploy failed before it changed anything there (its realise) is behind, not failed.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNarInfo } from "../src/nix/narinfo.js";
import { run } from "../support/cli.js";
import { dashboardApi, dashboardHost, dashboardText } from "./support/dashboard-api.js";
import { buildExampleSystems } from "./support/example-systems.js";
import { servedBy, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { zstdBombNar } from "./support/nar-bytes.js";
import {
  type RolloutFile,
  rolloutFiles,
  statusRows,
  undoPlanOf,
} from "./support/rollout-records.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
const H = (i: number) => `rt${i}`;

beforeAll(async () => {
  lab = await startSshLab("rt", 3);
}, 120_000);
afterAll(async () => {
  await lab?.down();
});

/** Host 3's link to the bridge, down (off the network) or up. */
async function link(state: "up" | "down"): Promise<void> {
  const r = await run("ip", ["link", "set", `nxs${lab.info.number}v3`, state]);
  expect(r.code, r.stderr).toBe(0);
}

async function deploy(system: string, ...extra: string[]) {
  await setExampleSystems(lab.fleetFile, { [H(1)]: system, [H(2)]: system, [H(3)]: system });
  return await lab.deploy("--json", ...extra);
}

function rollback(...extra: string[]) {
  const args = lab.info.dir;
  return lab.nixship([
    "rollback",
    "--fleet",
    lab.fleetFile,
    "--key",
    `${args}/cache.sec`,
    "--serve-cache",
    `10.231.${lab.info.number}.1:0`,
    "--json",
    ...extra,
  ]);
}

const status = (...extra: string[]) => statusRows(lab.nixship, lab.fleetFile, ...extra);

/** The id of the rollout a deploy's --json events name (its summary's rollout record). */
async function rolloutOf(host: string): Promise<string> {
  const ref = (await status("--stored")).rows.get(host)?.origin?.ref;
  expect(ref).toMatch(/^[0-9a-f]{12}$/);
  return ref as string;
}

/** The rollout record of `id`, as the deploy left it in the lab's cache directory. */
async function rolloutRecord(id: string): Promise<RolloutFile> {
  const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
  const found = (await rolloutFiles(fleet.cache.url)).find((r) => r.id === id);
  expect(found, `rollout ${id}`).toBeDefined();
  return found as RolloutFile;
}

const served = async () => await Promise.all([1, 2, 3].map((i) => servedBy(lab.info, H(i))));

describe("a host a rollout skipped is behind everywhere; rollback undoes a rollout, never more", () => {
  let v2Rollout: string;
  let v3Rollout: string;

  it("v1, v2, then v3 skipping host 3: the record says partial and names host 3 unreachable", async () => {
    expect((await deploy("web-v1")).code).toBe(0);
    const v2 = await deploy("web-v2");
    expect(v2.code, v2.stderr).toBe(0);
    v2Rollout = await rolloutOf(H(3));
    // The deploy's summary names its rollout, for `rollback --rollout ID`.
    const summary = JSON.parse(v2.stdout.trim().split("\n").at(-1) as string);
    expect(summary).toMatchObject({ type: "summary", rollout: v2Rollout });
    await link("down");
    try {
      const v3 = await deploy("web-v3", "--skip-unreachable");
      expect(v3.code, v3.stderr).toBe(0);
      expect(summaryOf(v3)[H(3)]).toMatchObject({ status: "skipped", reason: "unreachable" });
    } finally {
      await link("up");
    }
    v3Rollout = await rolloutOf(H(1));
    expect(v3Rollout).not.toBe(v2Rollout);
    const record = await rolloutRecord(v3Rollout);
    expect(record.state).toBe("partial");
    expect(record.skipped).toEqual([
      expect.objectContaining({ host: H(3), state: "unreachable", system: expect.any(String) }),
    ]);
    expect(await served()).toEqual(["web-v3", "web-v3", "web-v2"]);
    const page = (await dashboardApi(lab.fleetFile, `/api/hosts/${H(3)}`)) as {
      rollouts: { id: string; entry: { state: string } }[];
    };
    // Its page's rollouts list the one that skipped it.
    expect(page.rollouts[0]).toMatchObject({ id: v3Rollout, entry: { state: "unreachable" } });
  });

  it("status live and --stored, and the dashboard, call host 3 behind with the rollout that skipped it", async () => {
    for (const extra of [[], ["--stored"]]) {
      const { code, rows } = await status(...extra);
      expect(code, `status ${extra.join(" ")}`).toBe(1);
      expect(rows.get(H(3))).toMatchObject({
        inStep: false,
        behindRollout: {
          rollout: v3Rollout,
          why: expect.stringMatching(/^skipped as unreachable/),
        },
      });
      expect(rows.get(H(1))?.inStep).toBe(true);
      expect(rows.get(H(2))?.inStep).toBe(true);
    }
    const text = await lab.nixship(["status", "--fleet", lab.fleetFile]);
    expect(text.stdout).toMatch(new RegExp(`${H(3)} .*behind.*behind rollout ${v3Rollout}`));
    const row = await dashboardHost(lab.fleetFile, H(3));
    expect(row).toMatchObject({ inStep: false, behindRollout: { rollout: v3Rollout } });
    const metrics = await dashboardText(lab.fleetFile, "/metrics");
    expect(metrics).toMatch(/^nixship_hosts\{state="behind",mode="ssh"\} 1$/m);
    const page = await dashboardText(lab.fleetFile, `/hosts/${H(3)}`);
    expect(page).toContain(
      `<span class="badge behind">behind</span> rollout ${v3Rollout} (skipped as unreachable`,
    );
    const plan = await lab.nixship(["plan", "--fleet", lab.fleetFile]);
    expect(plan.stdout).toContain(`behind rollout ${v3Rollout} (skipped as unreachable`);
  });

  it("a fleet rollback undoes the v3 rollout alone: all three on v2, host 3 left where it is", async () => {
    const back = await rollback();
    expect(back.code, back.stderr).toBe(0);
    const undo = undoPlanOf(back.stdout);
    expect(undo.rollout).toBe(v3Rollout);
    expect(undo.steps.map((s) => [s.host, s.kind])).toEqual([
      [H(1), "back"],
      [H(2), "back"],
      [H(3), "stays"],
    ]);
    expect(await served()).toEqual(["web-v2", "web-v2", "web-v2"]);
    // Its deploy names the hosts that go back, and no other: host 3 is not surveyed, judged
    // or activated by it.
    const planned = back.stdout
      .split("\n")
      .filter((l) => l.startsWith('{"type":"plan"'))
      .map((l) => (JSON.parse(l) as { plan: { hosts: { host: string }[] } }).plan.hosts);
    expect(planned.map((hosts) => hosts.map((h) => h.host))).toEqual([[H(1), H(2)]]);
    // A rollout record of its own, naming what it undid and the host it left.
    const own = (await status("--stored")).rows.get(H(1))?.origin?.ref as string;
    const record = await rolloutRecord(own);
    expect(record).toMatchObject({ undoes: v3Rollout, state: "succeeded" });
    expect(record.skipped).toEqual([
      expect.objectContaining({
        host: H(3),
        state: "left",
        message: expect.stringContaining("skipped it as unreachable"),
      }),
    ]);
    const { code, rows } = await status("--stored");
    expect(code).toBe(0);
    expect([...rows.values()].every((r) => r.inStep && r.behindRollout === undefined)).toBe(true);
    expect((await status()).code).toBe(0);
  });

  it("a second fleet rollback steps back to the v2 rollout, never redoing v3: all three on v1", async () => {
    const back = await rollback();
    expect(back.code, back.stderr).toBe(0);
    expect(undoPlanOf(back.stdout).rollout).toBe(v2Rollout);
    expect(await served()).toEqual(["web-v1", "web-v1", "web-v1"]);
    expect((await status()).code).toBe(0);
  });

  it("undoing a rollout that changed no host records it undone: its host is behind it no longer", async () => {
    // v2 for host 3 alone, while it is off the network: skipped, and behind that rollout.
    await link("down");
    let skipping: string;
    try {
      const r = await deploy("web-v2", "--on", H(3), "--skip-unreachable");
      expect(r.code, r.stderr).toBe(0);
      skipping = (JSON.parse(r.stdout.trim().split("\n").at(-1) as string) as { rollout: string })
        .rollout;
    } finally {
      await link("up");
    }
    expect((await status("--stored")).rows.get(H(3))?.behindRollout).toMatchObject({
      rollout: skipping,
    });
    const back = await rollback();
    expect(back.code, back.stderr).toBe(0);
    const undo = undoPlanOf(back.stdout);
    expect(undo.rollout).toBe(skipping);
    expect(undo.steps.map((s) => [s.host, s.kind])).toEqual([[H(3), "stays"]]);
    // Nothing went back, and the rollout is undone all the same: every view says in step.
    expect(await served()).toEqual(["web-v1", "web-v1", "web-v1"]);
    const stored = await status("--stored");
    expect(stored.code).toBe(0);
    expect(stored.rows.get(H(3))?.behindRollout).toBeUndefined();
    expect((await status()).code).toBe(0);
    const undone = (
      await rolloutFiles(
        (JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } }).cache.url,
      )
    ).find((r) => (r as { undoes?: string }).undoes === skipping);
    expect(undone).toMatchObject({
      state: "succeeded",
      skipped: [expect.objectContaining({ host: H(3), state: "left" })],
    });
  });
});

describe("a host that failed in a rollout and went back is in step once the rollout is undone", () => {
  it("v2 with host 2 broken stops at host 2; its rollback leaves every host in step in every view", async () => {
    await setExampleSystems(lab.fleetFile, {
      [H(1)]: "web-v2",
      [H(2)]: "web-broken",
      [H(3)]: "web-v2",
    });
    const failed = await lab.deploy(
      "--json",
      "--canary",
      "0",
      "--parallel",
      "1",
      "--max-failures",
      "0",
    );
    expect(failed.code, failed.stderr).not.toBe(0);
    const rollout = (
      JSON.parse(failed.stdout.trim().split("\n").at(-1) as string) as { rollout: string }
    ).rollout;
    expect(await served()).toEqual(["web-v2", "web-v1", "web-v1"]);
    // Before the rollback: host 2 failed there and went back.
    expect((await status("--stored")).rows.get(H(2))?.hostState).toBe("rolled-back");

    const back = await rollback();
    expect(back.code, back.stderr).toBe(0);
    expect(undoPlanOf(back.stdout)).toMatchObject({
      rollout,
      steps: [
        { host: H(1), kind: "back" },
        { host: H(2), kind: "stays" },
        { host: H(3), kind: "stays" },
      ],
    });
    expect(await served()).toEqual(["web-v1", "web-v1", "web-v1"]);
    for (const extra of [[], ["--stored"]]) {
      const { code, rows } = await status(...extra);
      expect(code, `status ${extra.join(" ")}: ${JSON.stringify([...rows.values()])}`).toBe(0);
      expect(rows.get(H(2))).toMatchObject({
        inStep: true,
        hostState: "in-step",
        failureUndone: rollout,
      });
    }
    const text = await lab.nixship(["status", "--fleet", lab.fleetFile]);
    expect(text.stdout).toMatch(
      new RegExp(
        `${H(2)} .*in-step +failed in rollout ${rollout} and went back; that rollout is undone`,
      ),
    );
    expect(await dashboardHost(lab.fleetFile, H(2))).toMatchObject({
      inStep: true,
      hostState: "in-step",
      failureUndone: rollout,
    });
    const metrics = await dashboardText(lab.fleetFile, "/metrics");
    expect(metrics).toMatch(/^nixship_hosts\{state="in-step",mode="ssh"\} 3$/m);
  });
});

describe("a host whose deploy failed before it changed anything there is behind, not failed", () => {
  it("v4 fails in host 2's realise (its NAR swapped): host 2 runs v1, behind that rollout in every view", async () => {
    const { "web-v4": v4 } = await buildExampleSystems();
    const cache = join(lab.info.dir, "cache");
    const pushed = await lab.nixship([
      "push",
      v4,
      "--to",
      `file://${cache}`,
      "--key",
      join(lab.info.dir, "cache.sec"),
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const hash = v4.slice("/nix/store/".length, "/nix/store/".length + 32);
    const info = parseNarInfo(await readFile(join(cache, `${hash}.narinfo`), "utf8"));
    await writeFile(join(cache, info.url), zstdBombNar(1024 * 1024));
    await setExampleSystems(lab.fleetFile, {
      [H(1)]: "web-v1",
      [H(2)]: "web-v4",
      [H(3)]: "web-v1",
    });
    const failed = await lab.deploy("--json");
    expect(failed.code, failed.stderr).toBe(1);
    expect(summaryOf(failed)[H(2)]).toMatchObject({ status: "failed", phase: "realise" });
    const rollout = (
      JSON.parse(failed.stdout.trim().split("\n").at(-1) as string) as { rollout: string }
    ).rollout;
    expect(await served()).toEqual(["web-v1", "web-v1", "web-v1"]);
    for (const extra of [[], ["--stored"]]) {
      const { code, rows } = await status(...extra);
      expect(code, `status ${extra.join(" ")}`).toBe(1);
      expect(rows.get(H(2))).toMatchObject({
        inStep: false,
        hostState: "behind",
        behindRollout: { rollout, why: expect.stringMatching(/^failed: /) },
      });
      expect(rows.get(H(2))).not.toHaveProperty("failed");
    }
  });
});
