// What a deploy costs each host in SSH logins within the bound on held connections,
// counted where they happen, in each lab host's sshd log: a host that changes costs two (its
// shared connection, made for the survey and kept to its wave, and the confirmation's new one,
// which proves that a new login still works after the switch), a host already up to date one.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildExampleSystems } from "./support/example-systems.js";
import { setExampleSystems, sshdLogins } from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOSTS = ["olg1", "olg2", "olg3"];
let lab: SshLab;

beforeAll(async () => {
  await buildExampleSystems();
  lab = await startSshLab("olg", HOSTS.length);
}, 300_000);

afterAll(async () => {
  await lab?.down();
}, 120_000);

/** Logins each host's sshd accepted so far (one per SSH handshake). */
async function logins(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const host of HOSTS) counts[host] = await sshdLogins(lab.info.dir, host);
  return counts;
}

function since(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(HOSTS.map((h) => [h, (after[h] ?? 0) - (before[h] ?? 0)]));
}

describe("SSH logins per host within the bound", () => {
  it("costs a host that changes two logins, and one already up to date one", async () => {
    // Every host gets web-v1 (the lab's fleet file names it): each changes.
    const start = await logins();
    const first = await lab.deploy("--canary", "1");
    expect(first.code, first.stderr.slice(-3000)).toBe(0);
    const afterFirst = await logins();
    expect(since(start, afterFirst)).toEqual({ olg1: 2, olg2: 2, olg3: 2 });

    // One host changes; the others are asked what they run and left alone.
    await setExampleSystems(lab.fleetFile, { olg2: "web-v2" });
    const second = await lab.deploy();
    expect(second.code, second.stderr.slice(-3000)).toBe(0);
    expect(since(afterFirst, await logins())).toEqual({ olg1: 1, olg2: 2, olg3: 1 });
  }, 300_000);
});
