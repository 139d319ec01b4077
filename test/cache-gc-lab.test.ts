// `cache gc --fleet` on the lab: a gc never breaks a rollback. An ssh host that ran web-v1,
// then web-v2, and now runs web-v3 can go back to web-v1 (`rollback --to 1`); the store's record
// names only web-v3 and web-v2 (the system before it), so the host's own answer (its profile's
// generations) is what keeps web-v1 in the cache. With --stored (records only) the same
// collection would delete it.
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { takeGcLock } from "../src/cache/gc-lease.js";
import { openStore } from "../src/store/url.js";
import { nixship } from "../support/cli.js";
import { deployEvents, labDeployArgs, servedBy, setExampleSystems } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;

beforeAll(async () => {
  lab = await startSshLab("gcl", 1);
}, 120_000);
afterAll(async () => {
  await lab?.down();
});

/** The directory of a `file://` cache URL (a query, if any, left out). */
const cacheDir = (url: string) => fileURLToPath(url.replace(/\?.*$/, ""));

interface GcJson {
  readonly dryRun: boolean;
  readonly roots: { readonly bySource: Record<string, number> };
  readonly deleted: { readonly narinfo: { readonly objects: number } };
}

describe("cache gc --fleet", () => {
  it("keeps what an ssh host can roll back to, from the host's own answer", async () => {
    const host = lab.info.hosts[0]?.name as string;
    for (const system of ["web-v1", "web-v2", "web-v3"]) {
      await setExampleSystems(lab.fleetFile, { [host]: system });
      const r = await lab.deploy("--json");
      expect(r.code, r.stderr).toBe(0);
    }
    const status = await lab.nixship(["status", "--fleet", lab.fleetFile, "--json"]);
    const row = (
      JSON.parse(status.stdout) as { hosts: { generations: { path: string }[]; current: string }[] }
    ).hosts[0];
    const v1 = row?.generations
      .map((g) => g.path)
      .find((p) => p.endsWith("-example-web-system-v1"));
    expect(v1, status.stdout).toBeDefined();

    const gc = (...extra: string[]) =>
      lab.nixship(["cache", "gc", "--fleet", lab.fleetFile, "--grace", "0", "--json", ...extra]);
    // Records only: web-v1 is named by nothing the store holds (the record: web-v3, and web-v2
    // before it), so it would go.
    const stored = await gc("--stored", "--dry-run");
    expect(stored.code, stored.stderr).toBe(0);
    const storedReport = JSON.parse(stored.stdout) as GcJson;
    expect(storedReport.roots.bySource.live).toBeUndefined();
    expect(storedReport.deleted.narinfo.objects).toBeGreaterThan(0);

    // Asking the host: its generations are roots, and web-v1 stays.
    const live = await gc();
    expect(live.code, live.stderr).toBe(0);
    const liveReport = JSON.parse(live.stdout) as GcJson;
    expect(liveReport.roots.bySource.live).toBeGreaterThanOrEqual(2);
    expect(liveReport.deleted.narinfo.objects).toBeLessThan(storedReport.deleted.narinfo.objects);

    // web-v1's closure is whole in the cache, signed: the host could fetch it again.
    const { cache } = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      cache: { url: string; publicKeys: string[] };
    };
    const whole = await lab.nixship([
      "verify",
      "--cache",
      cache.url,
      "--trusted-key",
      cache.publicKeys[0] as string,
      v1 as string,
    ]);
    expect(whole.code, whole.stdout).toBe(0);

    // Whoever can write the store rewrites the host's record to name web-v1 alone. The deploys'
    // rollout records are signed with the cache key: the newest that names the host still
    // keeps web-v3, which it gave, and web-v2, which the host ran before.
    const v3 = row?.current as string;
    const forged = JSON.parse(
      await readFile(join(cacheDir(cache.url), "status", "hosts", `${host}.json`), "utf8"),
    ) as Record<string, unknown>;
    await writeFile(
      join(cacheDir(cache.url), "status", "hosts", `${host}.json`),
      `${JSON.stringify({ ...forged, current: v1, desired: v1, previous: v1 })}\n`,
    );
    const afterForgery = await gc("--stored", "--dry-run");
    expect(afterForgery.code, afterForgery.stderr).toBe(0);
    const report = JSON.parse(afterForgery.stdout) as GcJson & {
      deletedPaths: { storePath: string }[];
    };
    expect(report.roots.bySource.rollout).toBeGreaterThanOrEqual(2);
    const goes = report.deletedPaths.map((d) => d.storePath);
    expect(goes).not.toContain(v3);
    expect(
      goes.some((p) => p.endsWith("-example-web-system-v2")),
      goes.join("\n"),
    ).toBe(false);
  }, 240_000);

  it("a deploy waits for a collection in progress, says so, and deploys once it ends", async () => {
    const host = lab.info.hosts[0]?.name as string;
    const { cache } = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      cache: { url: string };
    };
    const store = await openStore(cache.url);
    try {
      const lock = await takeGcLock(store, { waitMs: 0 });
      await setExampleSystems(lab.fleetFile, { [host]: "web-v2" });
      // The deploy says it waits (gc-wait), having stepped back its lease: nothing was built or
      // pushed meanwhile.
      let out = "";
      let said: () => void = () => {};
      const waiting = new Promise<void>((resolve) => {
        said = resolve;
      });
      const deploying = nixship(
        labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"), "--json"),
        {
          env: { NIXSHIP_LAB_DIR: dirname(lab.info.dir) },
          onStdout: (chunk) => {
            out += chunk;
            if (/"type": ?"gc-wait"/.test(out)) said();
          },
        },
      );
      const ended = deploying.then((r) => {
        throw new Error(`the deploy ended without waiting for the collection:\n${r.stderr}`);
      });
      await Promise.race([waiting, ended]);
      const leases = await store.list("gc/leases/");
      expect(leases.objects).toEqual([]);
      await lock.release();
      const r = await deploying;
      expect(r.code, r.stderr).toBe(0);
      const events = deployEvents(r);
      const types = events.map((e) => e.type);
      expect(types.indexOf("gc-wait")).toBeGreaterThanOrEqual(0);
      expect(types.indexOf("gc-wait")).toBeLessThan(types.indexOf("build-start"));
      expect(types.filter((t) => t === "gc-wait")).toHaveLength(1);
      expect(await servedBy(lab.info, host)).toBe("web-v2");
      // Its lease is given back at the end (the first test's collection left its report).
      expect(
        (await store.list("gc/")).objects.filter((o) => !o.key.startsWith("gc/reports/")),
      ).toEqual([]);
    } finally {
      await store.close();
    }
  }, 240_000);
});
