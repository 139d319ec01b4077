// The closure diff in the plan, on a lab of two ssh hosts with the real Nix: both run the
// example web-hello (deployed through the lab's cache), and the plan for web-hello-next, which
// differs in one package's version (hello 2.12 → 2.12.1), shows exactly that change and the
// sizes, first from the deployer's own store, then, once the deployer no longer has web-hello,
// from the cache's narinfos; with neither, it says why. The systems are the examples' with a
// nonce in every derivation (support/fresh-systems.ts's ownSystems): the paths the test deletes
// from the machine's store are its own, never ones another test or checkout holds alive.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryClosure, validPaths } from "../src/cache/local-nix.js";
import { hashPartOf } from "../src/cache/read.js";
import type { PlanDiffs } from "../src/fleet/plan-diffs.js";
import type { StorePath } from "../src/nix/store-path.js";
import { runOk } from "../support/cli.js";
import { type FreshSystems, ownSystems, setBuildFleet } from "./support/fresh-systems.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let hosts: string[];
let systems: FreshSystems;

/** Every host of the lab runs `name` of the test's own systems. */
async function setSystems(name: string): Promise<void> {
  for (const host of hosts) {
    await setBuildFleet(lab.fleetFile, host, `path:${systems.dir}#${name}`, undefined);
  }
}

interface PlanJson {
  readonly hosts: readonly { host: string; current?: StorePath; desired: StorePath }[];
  readonly diffs: PlanDiffs;
}

async function plan(...extra: string[]): Promise<PlanJson> {
  const r = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--json", ...extra]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as PlanJson;
}

/** Each path of `root`'s closure and its NAR size, as the local Nix records them. */
async function closureSizes(root: StorePath): Promise<Map<StorePath, number>> {
  return new Map((await queryClosure([root])).map((i) => [i.path, i.narSize]));
}

const sum = (sizes: Map<StorePath, number>) => [...sizes.values()].reduce((a, b) => a + b, 0);
const named = (sizes: Map<StorePath, number>, name: string) =>
  [...sizes].find(([p]) => p.endsWith(`-${name}`)) ?? [];

/** What the plan must show: hello's version and size, nothing added or removed. */
let expected: PlanDiffs["groups"][number]["diff"];
let current: StorePath;
let desired: StorePath;
/** web-hello's paths that web-hello-next does not share. */
let ownPaths: StorePath[];

beforeAll(async () => {
  // As examples/flake.nix has them.
  systems = await ownSystems({
    "web-hello": `name = "web-hello"; version = "hello"; tag = "hello"; packages = { hello = "2.12"; };`,
    "web-hello-next": `name = "web-hello-next"; version = "hello-next"; tag = "hello"; packages = { hello = "2.12.1"; };`,
  });
  lab = await startSshLab("pd", 2);
  hosts = lab.info.hosts.map((h) => h.name);
  await setSystems("web-hello");
  const deployed = await lab.deploy("--json");
  expect(deployed.code, deployed.stderr).toBe(0);
  await setSystems("web-hello-next");
});

afterAll(async () => {
  await lab?.down();
  await systems?.remove();
});

describe("the plan's closure diff", () => {
  it("shows the one version change, from the deployer's store while it has the running system", async () => {
    const planned = await plan();
    current = planned.hosts[0]?.current as StorePath;
    desired = planned.hosts[0]?.desired as StorePath;
    expect(planned.hosts.map((h) => [h.current, h.desired])).toEqual(
      hosts.map(() => [current, desired]),
    );
    const before = await closureSizes(current);
    const after = await closureSizes(desired);
    ownPaths = [...before.keys()].filter((p) => !after.has(p));
    const [, hello1 = 0] = named(before, "hello-2.12");
    const [, hello2 = 0] = named(after, "hello-2.12.1");
    expect(hello2 - hello1, "the example's hello 2.12.1 is larger").toBeGreaterThan(0);
    expected = {
      changed: [
        {
          name: "hello",
          before: ["2.12"],
          after: ["2.12.1"],
          sizeDelta: hello2 - hello1,
          kind: "upgrade",
        },
      ],
      added: [],
      removed: [],
      // The toplevel and its etc: other contents, same names.
      rebuilt: 2,
      sizeBefore: sum(before),
      sizeAfter: sum(after),
    };
    expect(planned.diffs).toEqual({
      groups: [{ hosts, currentFrom: "local-store", diff: expected }],
      unavailable: [],
      narinfosRead: 0,
    });
  });

  it("reads the running closure from the cache once the deployer lacks it: the same diff", async () => {
    // The toplevel, its etc and hello 2.12: only web-hello has them, and only this run's
    // web-hello (its nonce), so no other build holds them alive.
    expect(ownPaths.map((p) => p.replace(/^.*?-/, "")).sort()).toEqual([
      "example-web-etc-hello",
      "example-web-system-hello",
      "hello-2.12",
    ]);
    await runOk("nix-store", ["--delete", ...ownPaths]);
    expect(await validPaths([current])).toEqual(new Set());

    const planned = await plan();
    expect(planned.diffs).toEqual({
      groups: [{ hosts, currentFrom: "cache", diff: expected }],
      unavailable: [],
      narinfosRead: ownPaths.length,
    });

    const text = await lab.nixship(["plan", "--fleet", lab.fleetFile]);
    expect(text.code, text.stderr).toBe(0);
    const delta = `+${expected.sizeAfter - expected.sizeBefore} B`;
    expect(text.stdout).toContain(
      `package changes:\n  ${hosts.join(", ")}: 1 changed (hello 2.12 → 2.12.1), 2 rebuilt, ${delta}\n`,
    );
    expect(text.stderr).toContain(
      "read 3 narinfos of the running systems' closures from the cache",
    );

    const full = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--diff"]);
    expect(full.code, full.stderr).toBe(0);
    const section = full.stdout.slice(full.stdout.indexOf("package changes:")).split("\n");
    expect(section.slice(0, 5)).toEqual([
      "package changes:",
      `  ${hosts.join(", ")} (the running system's closure from the cache):`,
      "    [U] hello 2.12 → 2.12.1",
      "    2 packages rebuilt with the same version",
      expect.stringMatching(/^ {4}Closure size: .* → .* \(\+\d+ B\)$/),
    ]);
  });

  it("deploy --diff prints the whole diff in its plan", async () => {
    const [first] = hosts as [string];
    const r = await lab.deploy("--on", first, "--diff");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `package changes:\n  ${first} (the running system's closure from the cache):\n    [U] hello 2.12 → 2.12.1\n`,
    );
  });

  it("asks the host when neither the cache nor the deployer has its system: the same diff", async () => {
    await rm(join(lab.info.dir, "cache", `${hashPartOf(current)}.narinfo`));
    const planned = await plan();
    const [first, second] = hosts as [string, string];
    // The first host runs web-hello-next now: nothing to diff.
    expect(planned.hosts.find((h) => h.host === first)?.current).toBe(desired);
    expect(planned.diffs).toEqual({
      groups: [{ hosts: [second], currentFrom: "host", diff: expected }],
      unavailable: [],
      narinfosRead: 1,
    });
    const full = await lab.nixship(["plan", "--fleet", lab.fleetFile, "--diff"]);
    expect(full.stdout).toContain(
      `package changes:\n  ${second} (the running system's closure from the host):\n    [U] hello 2.12 → 2.12.1\n`,
    );
  });
});
