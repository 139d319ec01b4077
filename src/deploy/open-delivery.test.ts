// openDelivery for agent hosts: the keys their reports are judged by, and what a deploy says
// while the fleet does not require signed reports.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeHostKey } from "../../test/support/ssh-host-key.js";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { openDelivery } from "./open-delivery.js";

let dir: string;
let hostKey: string;
const release = formatPublicKey(publicKeyOf(generateSecretKey("release-1")));
const cache = formatPublicKey(publicKeyOf(generateSecretKey("cache-1")));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-open-delivery-"));
  hostKey = (await makeHostKey(dir, "web1")).publicKey;
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const system = `/nix/store/${"a".repeat(32)}-nixos-system-web1`;
const fleetOf = (signedReports: boolean | undefined) =>
  parseFleetValue(
    {
      cache: { url: `file://${join(dir, "cache")}`, publicKeys: [cache] },
      releases: {
        channel: "prod",
        publicKeys: [release],
        ...(signedReports === undefined ? {} : { signedReports }),
      },
      hosts: {
        web1: { delivery: "agent", hostKey, system },
        web2: { delivery: "agent", system },
      },
    },
    join(dir, "nixship.json"),
  );

describe("agent hosts' reports", () => {
  it("a fleet that does not require signed reports is told, with the hosts it believes on unsigned ones and how to require them", async () => {
    const fleet = fleetOf(undefined);
    const opened = await openDelivery(fleet, fleet.hosts, { fleetDir: dir });
    try {
      const notes = await opened.delivery.channel?.plan([]);
      expect(notes).toEqual([
        `1 agent host whose key the fleet knows is believed on unsigned reports: anyone who can write the store can report for it; once every agent runs a nixship that signs its reports, set releases.signedReports to true (docs/agent.md, "Signed reports")`,
      ]);
    } finally {
      await opened.close();
    }
  });

  it("a fleet that requires them says nothing of it", async () => {
    const fleet = fleetOf(true);
    const opened = await openDelivery(fleet, fleet.hosts, { fleetDir: dir });
    try {
      expect(await opened.delivery.channel?.plan([])).toEqual([]);
    } finally {
      await opened.close();
    }
  });
});
