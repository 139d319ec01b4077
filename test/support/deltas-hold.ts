// A lab deploy whose delta pairs are computed while it runs, made to outlast that computing: a
// rollout that ends first stops it (deltas never hold a deploy up), and a host whose wave starts
// before its deltas are published fetches whole, which a loaded machine makes the case. So the
// deploy's hosts wait in a command check until the deploy says the pairs' first pass is done
// (`deltas-done`). And the deploy starts as a fleet's first does, with no rollout record
// before it: a deploy weighs the last deploys' pace and may judge loopback on a loaded machine
// a fast link, on which no delta is computed (test/deploy-deltas-background.test.ts tests that).
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ROLLOUT_PREFIX } from "../../src/status/rollout.js";
import { listAll } from "../../src/store/helpers.js";
import { openStore } from "../../src/store/url.js";
import type { CliRun } from "../../support/cli.js";
import { labDeployArgs } from "./lab-deploy.js";
import { deployActing } from "./paused-deploy.js";
import type { SshLab } from "./ssh-lab.js";

/** Where the held host's check looks, in its own /nix. */
const GO_MARK = "/nix/var/nixship-deltas-test-go";

/** Removes the rollout records of the lab's cache. */
async function forgetRollouts(fleetFile: string): Promise<void> {
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as { cache: { url: string } };
  const cache = await openStore(doc.cache.url);
  try {
    const keys: string[] = [];
    for await (const { key } of listAll(cache, ROLLOUT_PREFIX)) keys.push(key);
    for (const key of keys) await cache.delete(key);
  } finally {
    await cache.close();
  }
}

/**
 * `nixship deploy EXTRA… --json` of the lab, each host of `hosts` (those it deploys) waiting in a
 * command check (up to 240 s) until the deploy's `deltas-done`; the fleet file as it was
 * afterwards. (The check is the fleet's `policy`, not a `policies` entry: an entry would make
 * its hosts a role of their own, with waves of their own.)
 */
export async function deployOutlastingDeltas(
  lab: SshLab,
  hosts: readonly string[],
  ...extra: string[]
): Promise<CliRun> {
  await forgetRollouts(lab.fleetFile);
  const marks = hosts.map((host) => join(lab.info.dir, "hosts", host, GO_MARK));
  const fleet = await readFile(lab.fleetFile, "utf8");
  const doc = JSON.parse(fleet) as { policy?: { health?: Record<string, unknown> } };
  const check = { run: `test -e ${GO_MARK}`, timeout: 240 };
  doc.policy = { ...doc.policy, health: { ...doc.policy?.health, commands: [check] } };
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
  try {
    return await deployActing(
      labDeployArgs(lab.info, lab.fleetFile, join(lab.info.dir, "cache.sec"), ...extra, "--json"),
      (e) => e.type === "deltas-done",
      async () => {
        for (const mark of marks) await writeFile(mark, "");
      },
    );
  } finally {
    await writeFile(lab.fleetFile, fleet);
    for (const mark of marks) await rm(mark, { force: true });
  }
}
