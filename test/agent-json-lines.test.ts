// `nixship agent --json` prints NDJSON, as its help says: one event per line, each an object
// with its time and type, so that `jq -c` or a log shipper reads one event per line.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import { publishRelease } from "../src/release/release-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { nixship } from "../support/cli.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-agent-json-"));
});
afterAll(() => rm(work, { recursive: true, force: true }));

describe("agent --json", () => {
  it("writes one JSON object per line, each with at and type", async () => {
    const trusted = generateSecretKey("release-1");
    const stranger = generateSecretKey("stranger-1");
    const cache = join(work, "cache");
    await mkdir(cache);
    await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
    // A release the agent must refuse (not signed by a key it trusts): a second event.
    await publishRelease(new FsStore(cache), {
      channel: "prod",
      hosts: { h1: { path: `/nix/store/${"a".repeat(32)}-nixos-system-h1` as StorePath } },
      kind: "deploy",
      action: "switch",
      health: { http: [], commands: [] },
      confirmTimeout: 30,
      key: stranger,
    });
    const config = join(work, "agent.json");
    const pub = formatPublicKey(publicKeyOf(trusted));
    await writeFile(
      config,
      JSON.stringify({
        store: `file://${cache}`,
        channel: "prod",
        host: "h1",
        releaseKeys: [pub],
        cacheKeys: [pub],
        stateDir: join(work, "state"),
      }),
    );
    const r = await nixship(["agent", "--config", config, "--once", "--json"]);
    // A refused release is a failed poll.
    expect(r.code, r.stderr).toBe(1);
    const lines = r.stdout.trimEnd().split("\n");
    const events = lines.map((line) => JSON.parse(line) as { at: string; type: string });
    expect(events.map((e) => e.type)).toEqual(["started", "rejected"]);
    for (const e of events) expect(Number.isNaN(Date.parse(e.at))).toBe(false);
  });
});
