// `release list` and `release show` take the channel from the fleet (releases.channel) when
// --channel does not name one, and say what to pass when neither does.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatedKey, nixship } from "../support/cli.js";

let work: string;
let cache: string;
const env = { NIXSHIP_FLEET: "" };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-release-channel-"));
  cache = join(work, "cache");
  await mkdir(join(cache, "releases", "prod"), { recursive: true });
  await writeFile(join(cache, "nix-cache-info"), "StoreDir: /nix/store\n");
  // Not a release: listed as malformed, which shows the channel's directory was read.
  await writeFile(join(cache, "releases", "prod", "1.json"), '{"junk":1}\n');
  const key = await generatedKey(work, "release-channel-1");
  await writeFile(
    join(work, "nixship.json"),
    JSON.stringify({
      cache: { url: `file://${cache}`, publicKeys: [key.publicKey] },
      releases: { channel: "prod", publicKeys: [key.publicKey] },
      hosts: {
        a1: {
          delivery: "agent",
          system: "/nix/store/00000000000000000000000000000000-example",
        },
      },
    }),
  );
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("the channel of release list and show", () => {
  it("is the fleet's releases.channel when --channel names none", async () => {
    const listed = await nixship(["release", "list", "--json"], { env, cwd: work });
    expect(listed.code, listed.stderr).toBe(0);
    const out = JSON.parse(listed.stdout) as { channel: string; releases: { seq: number }[] };
    expect(out.channel).toBe("prod");
    expect(out.releases.map((r) => r.seq)).toEqual([1]);
    const shown = await nixship(["release", "show", "latest"], { env, cwd: work });
    expect(shown.code).toBe(1);
    expect(shown.stderr).toContain("channel prod has no release in");
    // No SEQ: the latest, as the summary says.
    const bare = await nixship(["release", "show"], { env, cwd: work });
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain("channel prod has no release in");
  });

  it("is --channel when given, beside the fleet", async () => {
    const listed = await nixship(["release", "list", "--channel", "other"], { env, cwd: work });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stderr).toContain("channel other has no releases");
  });

  it("with --store alone and no --channel, is asked for", async () => {
    const r = await nixship(["release", "list", "--store", `file://${cache}`], {
      env,
      cwd: tmpdir(),
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("release list: name the channel with --channel NAME");
  });
});
