// The agent's config looked at again before each poll: its keys taken when the file changes,
// what only a restart applies named in a warning, and a config that no longer reads leaving the
// keys as they were.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import { parseAgentConfig } from "./config.js";
import { watchedConfig } from "./config-watch.js";

const CACHE_KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const CACHE_KEY_2 = "cache.example.org-2:qPHRW3j6GuuUpH2xW+SE8d5lQ4Hd4l+GXDrq8aFcG3M=";
const oldKey = publicKeyOf(generateSecretKey("release-1"));
const newKey = publicKeyOf(generateSecretKey("release-2"));
const text = (k: typeof oldKey) => `${k.name}:${Buffer.from(k.bytes).toString("base64")}`;
const config = (over: Record<string, unknown> = {}) =>
  JSON.stringify({
    store: "file:///srv/cache",
    channel: "prod",
    releaseKeys: [text(oldKey)],
    cacheKeys: [CACHE_KEY],
    ...over,
  });

let dir: string;
let file: string;
const warnings: string[] = [];
const read = async (path: string) => parseAgentConfig(await readFile(path, "utf8"), path);
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-config-watch-"));
  file = join(dir, "agent.json");
  warnings.length = 0;
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe("watchedConfig", () => {
  it("gives the keys once the file changes, and nothing while it does not", async () => {
    await writeFile(file, config());
    const { config: first, trustNow } = await watchedConfig(file, read, (w) => warnings.push(w));
    expect(first.releaseKeys).toEqual([text(oldKey)]);
    expect(await trustNow()).toBeUndefined();
    await writeFile(file, config({ releaseKeys: [text(newKey)], cacheKeys: [CACHE_KEY_2] }));
    const trust = await trustNow();
    expect(trust?.releaseKeys.map((k) => k.name)).toEqual(["release-2"]);
    expect(trust?.cacheKeys).toEqual([CACHE_KEY_2]);
    expect(await trustNow()).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it("names what only a restart applies, and keeps the keys when the file no longer reads", async () => {
    await writeFile(file, config());
    const { trustNow } = await watchedConfig(file, read, (w) => warnings.push(w));
    await writeFile(file, config({ channel: "staging", pollInterval: 5 }));
    expect((await trustNow())?.releaseKeys.map((k) => k.name)).toEqual(["release-1"]);
    expect(warnings).toEqual([
      `the config ${file} changed channel, pollInterval, which apply when the agent starts again (systemctl restart nixship-agent); its keys apply now`,
    ]);
    await writeFile(file, "{ half");
    expect(await trustNow()).toBeUndefined();
    expect(warnings[1]).toMatch(
      new RegExp(
        `^the config ${file} changed and does not read \\(.*\\); the keys trusted stay as they were$`,
      ),
    );
    // Said once for that version of the file.
    expect(await trustNow()).toBeUndefined();
    expect(warnings).toHaveLength(2);
  });
});
