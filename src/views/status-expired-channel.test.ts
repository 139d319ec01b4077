// The status view over a real directory store: a channel whose current release has expired is
// said (a warning, and `expiredChannel`), though its hosts keep what they applied; a renewed
// one is not. A channel no trusted key signed (a key dropped from the fleet's) is said too.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseFleetValue } from "../fleet/fleet-file.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { publishRelease } from "../release/release-store.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { readStatusView } from "./status-view.js";

const SYSTEM = `/nix/store/${"a".repeat(32)}-system` as StorePath;
let dir: string;
let store: ObjectStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-expired-channel-"));
  store = await openStore(`file://${dir}?fsync=false`);
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** A fleet of one agent host, web1, whose cache and release key is `key`'s. */
function agentFleet(key: SecretKey) {
  const publicKey = formatPublicKey(publicKeyOf(key));
  return parseFleetValue(
    {
      cache: { url: `file://${dir}`, publicKeys: [publicKey] },
      releases: { channel: "prod", publicKeys: [publicKey] },
      hosts: { web1: { delivery: "agent", system: SYSTEM } },
    },
    "status-expired-channel.test.ts",
  );
}

/** The channel's next release, naming web1's system, signed by `key`. */
function publishWeb1(key: SecretKey, at: { now?: Date; maxAge?: number } = {}) {
  return publishRelease(store, {
    channel: "prod",
    hosts: { web1: { path: SYSTEM } },
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    key,
    ...at,
  });
}

describe("status of agent hosts", () => {
  it("says when the channel's current release expired, and not once it is renewed", async () => {
    const key = generateSecretKey("release-1");
    const fleet = agentFleet(key);
    const publish = (now: Date) => publishWeb1(key, { now, maxAge: 60 });
    const old = await publish(new Date(Date.now() - 3_600_000));
    const view = await readStatusView(fleet, fleet.hosts, { stored: true });
    expect(view.expiredChannel).toEqual({
      channel: "prod",
      seq: 1,
      expires: old.release.expires,
    });
    expect(view.warnings).toContainEqual(
      `channel prod's current release 1 expired at ${old.release.expires}: its hosts keep what they applied, but an agent that starts afresh (a new or reimaged host, one whose state was lost) refuses it; 'nixship release refresh' renews it (docs/agent.md, "Freeze protection")`,
    );
    await publish(new Date());
    const renewed = await readStatusView(fleet, fleet.hosts, { stored: true });
    expect(renewed.expiredChannel).toBeUndefined();
    expect(renewed.warnings.join("\n")).not.toContain("expired");
  });

  it("says when no key of releases.publicKeys signed the channel's current release, and not once one does", async () => {
    const dropped = generateSecretKey("release-1");
    const kept = generateSecretKey("release-2");
    const fleet = agentFleet(kept);
    const publish = (key: SecretKey) => publishWeb1(key);
    await publish(dropped);
    const view = await readStatusView(fleet, fleet.hosts, { stored: true });
    expect(view.untrustedChannel).toEqual({
      channel: "prod",
      seq: 1,
      problem:
        "channels/prod.json: release 1 of channel prod is signed by key 'release-1', which is not trusted (trusted: release-2)",
    });
    expect(view.warnings.join("\n")).toContain(
      "channel prod's current document (release 1) is not to be believed: channels/prod.json: release 1 of channel prod is signed by key 'release-1', which is not trusted (trusted: release-2); agents that trust only releases.publicKeys refuse it",
    );
    await publish(kept);
    const trusted = await readStatusView(fleet, fleet.hosts, { stored: true });
    expect(trusted.untrustedChannel).toBeUndefined();
    expect(trusted.warnings.join("\n")).not.toContain("not to be believed");
  });
});
