// Secrets through the pull agent, on a lab of two agent hosts: the deployer stores
// each host's bundle of ciphertexts in the store and the release signs its digest; each agent
// fetches its own, checks it, and installs it before the switch (one host's key comes from
// the fleet file, the other's from what its agent published). A rotated secret is delivered
// again with the same system; a bundle changed in the store is refused; and the plaintext is
// in no output, no object of the store and no Nix store.
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getSecretsBundle, secretsBundleKey } from "../src/channel/secrets-store.js";
import { parseSecretKey } from "../src/nix/keys.js";
import { publishRelease } from "../src/release/release-store.js";
import { readPublishedHostKey } from "../src/status/host-key-store.js";
import { type CliRun, nixship } from "../support/cli.js";
import {
  type AgentLab,
  CHANNEL,
  channelRelease,
  deployViaAgent,
  record,
  setSystems,
  startAgentLab,
  waitFor,
  withStore,
} from "./support/agent-lab.js";
import {
  filesHolding,
  freshPlaintext,
  keptOn,
  servedSecret,
  sha256,
  storeFilesHolding,
} from "./support/secrets-scan.js";

/** When this file started: the Nix store paths made since are the ones a leak could be in. */
const STARTED = new Date();
const TOKEN = freshPlaintext("agent-web-token");
const ROTATED = freshPlaintext("agent-web-token-rotated");
const PASSWORD = freshPlaintext("agent-db-password");
let lab: AgentLab;
const outputs: string[] = [];

async function cli(args: string[], input?: string): Promise<CliRun> {
  const r = await nixship(args, {
    env: lab.env,
    ...(input === undefined ? {} : { input: Buffer.from(input) }),
  });
  outputs.push(r.stdout, r.stderr);
  return r;
}

beforeAll(async () => {
  lab = await startAgentLab("ax", {
    hosts: 2,
    policy: { canary: 0, parallel: 2, confirmTimeout: 30 },
    agentConfig: { pollInterval: 1, heartbeatEvery: 10 },
  });
  const admin = join(lab.dir, "admin.txt");
  execFileSync("age-keygen", ["-o", admin], { stdio: "ignore" });
  await chmod(admin, 0o600);
  const recipient = execFileSync("age-keygen", ["-y", admin], { encoding: "utf8" }).trim();
  const doc = JSON.parse(readFileSync(lab.fleetFile, "utf8")) as Record<string, unknown>;
  doc.secrets = {
    admins: [recipient],
    entries: {
      "web-token": { hosts: "@web", group: "nogroup", mode: "0440" },
      "db-password": { hosts: "@db", owner: "nobody" },
    },
  };
  // ax2's key is not in the fleet file: its agent published it to the store at its first poll.
  delete (doc.hosts as Record<string, Record<string, unknown>>).ax2?.hostKey;
  writeFileSync(lab.fleetFile, JSON.stringify(doc, null, 2));
  const deadline = Date.now() + 30_000;
  while (
    (await withStore(lab, (store) => readPublishedHostKey(store, "ax2"))) === undefined &&
    Date.now() < deadline
  ) {
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const hostPub = readFileSync(join(lab.dir, "hosts", "ax2", "ssh_host_ed25519_key.pub"), "utf8");
  expect(await withStore(lab, (store) => readPublishedHostKey(store, "ax2"))).toBe(
    hostPub.trim().split(/\s+/).slice(0, 2).join(" "),
  );
  expect((await cli(["secrets", "set", "web-token", "--fleet", lab.fleetFile], TOKEN)).code).toBe(
    0,
  );
  expect(
    (await cli(["secrets", "set", "db-password", "--fleet", lab.fleetFile], PASSWORD)).code,
  ).toBe(0);
});

afterAll(async () => {
  await lab?.down();
});

describe("secrets over the pull agent", () => {
  it("each agent installs exactly its host's secrets before the switch", async () => {
    await setSystems(lab, "web-v1");
    const r = await deployViaAgent(lab);
    outputs.push(r.stdout, r.stderr);
    expect(r.code, r.stderr).toBe(0);
    expect(await keptOn(lab.dir, "ax1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${TOKEN}`);
    expect(await keptOn(lab.dir, "ax2", "/run/keys/db-password")).toBe(
      `nobody:root 400 ${PASSWORD}`,
    );
    expect(await keptOn(lab.dir, "ax1", "/run/keys/db-password")).toBe("(none)");
    expect(await keptOn(lab.dir, "ax2", "/run/keys/web-token")).toBe("(none)");
    expect(await servedSecret(lab.hosts.find((h) => h.name === "ax1")?.address as string)).toBe(
      sha256(TOKEN),
    );
    // The release signs each host's bundle; the bundle is in the store, ciphertexts only.
    const entry = (await channelRelease(lab)).release.hosts.ax1;
    expect(entry?.secrets?.bundle).toMatch(/^[0-9a-f]{64}$/);
  });

  it("a rotated secret is delivered again, with the same system", async () => {
    expect(
      (await cli(["secrets", "set", "web-token", "--fleet", lab.fleetFile], ROTATED)).code,
    ).toBe(0);
    const r = await deployViaAgent(lab);
    outputs.push(r.stdout, r.stderr);
    expect(r.code, r.stderr).toBe(0);
    expect(await keptOn(lab.dir, "ax1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${ROTATED}`);
    expect(await keptOn(lab.dir, "ax2", "/run/keys/db-password")).toBe(
      `nobody:root 400 ${PASSWORD}`,
    );
  });

  it("a bundle changed in the store is refused in phase secrets, nothing changes, and the next deploy repairs it", async () => {
    const current = (await channelRelease(lab)).release;
    const entry = current.hosts.ax1;
    const bundle = entry?.secrets?.bundle as string;
    await withStore(lab, async (store) => {
      await store.put(secretsBundleKey("ax1", bundle), Buffer.from("nixship-secrets 1\n"));
      // A release that names the same system, and (so that the agent acts) another manifest.
      await publishRelease(store, {
        channel: CHANNEL,
        hosts: {
          ...current.hosts,
          ax1: { path: entry?.path as never, secrets: { bundle, manifest: "0".repeat(64) } },
        },
        kind: "deploy",
        action: "switch",
        health: current.health,
        confirmTimeout: current.confirmTimeout,
        key: parseSecretKey(readFileSync(lab.releaseKeyFile, "utf8")),
      });
    });
    const refused = await waitFor(lab, "ax1", (r) => r?.state === "rejected", 60);
    expect(refused).toMatchObject({ state: "rejected", phase: "secrets", desired: entry?.path });
    expect(refused?.error).toContain("its release signed: refused");
    expect(await keptOn(lab.dir, "ax1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${ROTATED}`);
    expect((await record(lab, "ax1"))?.current).toBe(entry?.path);
    // The store's fault, not the system's: the next deploy names the system again without
    // --allow-failed, and puts back the bundle its release names.
    const again = await deployViaAgent(lab);
    outputs.push(again.stdout, again.stderr);
    expect(again.code, again.stderr).toBe(0);
    await withStore(lab, (store) => getSecretsBundle(store, "ax1", bundle));
    expect(await keptOn(lab.dir, "ax1", "/run/keys/web-token")).toBe(`root:nogroup 440 ${ROTATED}`);
  });

  it("the plaintext is in no output, no object of the store, and no Nix store", async () => {
    const all = [TOKEN, ROTATED, PASSWORD];
    for (const text of outputs) for (const secret of all) expect(text).not.toContain(secret);
    expect(await storeFilesHolding(all, STARTED)).toEqual([]);
    for (const secret of all) {
      expect(await filesHolding(join(lab.dir, "cache"), secret)).toEqual([]);
      for (const host of lab.hosts) {
        expect(await filesHolding(join(lab.dir, "hosts", host.name, "nix"), secret)).toEqual([]);
      }
    }
  });
});
