// The wrong --key cannot poison a fleet's cache, and one that did is repaired with --resign:
// push and deploy refuse a key the fleet does not trust; verify names paths no trusted key
// signed; push --resign adds the right signature, which stock `nix copy` then accepts.
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatedKey, nixCopyFrom, nixship } from "../support/cli.js";
import { buildFixtureClosure } from "./support/fixture-closure.js";

let work: string;
let root: string;
let rightKey: string;
let rightPub: string;
let wrongKey: string;
let wrongPub: string;

async function makeKey(name: string): Promise<[string, string]> {
  const { file, publicKey } = await generatedKey(work, name);
  return [file, publicKey];
}

/** A fleet whose hosts trust only the right key, with its cache at `cache`. */
async function fleetFor(cache: string): Promise<string> {
  const file = join(work, `fleet-${cache.split("/").at(-1)}.json`);
  await writeFile(
    file,
    JSON.stringify({
      cache: { url: `file://${cache}`, publicKeys: [rightPub] },
      hosts: { web1: { address: "192.0.2.10", system: root } },
    }),
  );
  return file;
}

async function narinfos(cache: string): Promise<Map<string, string>> {
  const names = (await readdir(cache)).filter((n) => n.endsWith(".narinfo")).sort();
  return new Map(
    await Promise.all(names.map(async (n) => [n, await readFile(join(cache, n), "utf8")] as const)),
  );
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-push-trust-"));
  [rightKey, rightPub] = await makeKey("fleet-cache-1");
  [wrongKey, wrongPub] = await makeKey("laptop-1");
  root = await buildFixtureClosure();
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("a signing key the fleet does not trust", () => {
  it("is refused by push --fleet and by deploy, naming both keys, and nothing is written", async () => {
    const cache = join(work, "refused");
    const fleet = await fleetFor(cache);
    const expected = `the signing key 'laptop-1' (public key ${wrongPub}) is not in ${fleet} cache.publicKeys (${rightPub}); hosts would refuse every path it signs`;
    const pushed = await nixship(["push", root, "--fleet", fleet, "--key", wrongKey]);
    expect(pushed.code, pushed.stderr).toBe(2);
    expect(pushed.stderr).toContain(expected);
    const deployed = await nixship(["deploy", "--fleet", fleet, "--key", wrongKey]);
    expect(deployed.code, deployed.stderr).toBe(2);
    expect(deployed.stderr).toContain(expected);
    // Also through $NIXSHIP_FLEET, with the cache taken from the fleet.
    const env = await nixship(["push", root, "--key", wrongKey], { env: { NIXSHIP_FLEET: fleet } });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain(expected);
    await expect(readdir(cache)).rejects.toThrow(/ENOENT/);
  });
});

describe("a release key the fleet's agents do not trust", () => {
  it("is refused by release publish, release refresh, deploy and rollback, naming both keys, and no release is written", async () => {
    const cache = join(work, "releases-refused");
    const [releaseKey, releasePub] = await makeKey("fleet-release-1");
    const fleet = join(work, "fleet-agents.json");
    await writeFile(
      fleet,
      JSON.stringify({
        cache: { url: `file://${cache}`, publicKeys: [rightPub] },
        releases: { channel: "prod", publicKeys: [releasePub] },
        hosts: { a1: { delivery: "agent", system: root } },
      }),
    );
    // The cache key given as the release key: every agent would refuse what it signs.
    const expected = `the signing key 'fleet-cache-1' (public key ${rightPub}) is not in ${fleet} releases.publicKeys (${releasePub}); agents would refuse every release it signs`;
    for (const argv of [
      ["release", "publish", "--fleet", fleet, "--key", rightKey, "--release-key", rightKey],
      ["release", "refresh", "--fleet", fleet, "--release-key", rightKey],
      ["deploy", "--fleet", fleet, "--key", rightKey, "--release-key", rightKey, "--async"],
      ["rollback", "--fleet", fleet, "--on", "a1", "--release-key", rightKey],
    ]) {
      const r = await nixship(argv);
      expect(r.code, `${argv.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(expected);
    }
    // $NIXSHIP_RELEASE_KEY is held to the same.
    const env = await nixship(["release", "refresh", "--fleet", fleet], {
      env: { NIXSHIP_RELEASE_KEY: rightKey },
    });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain(expected);
    // release publish's cache key too.
    const cacheKey = await nixship([
      "release",
      "publish",
      "--fleet",
      fleet,
      "--key",
      wrongKey,
      "--release-key",
      releaseKey,
    ]);
    expect(cacheKey.code).toBe(2);
    expect(cacheKey.stderr).toContain(
      `the signing key 'laptop-1' (public key ${wrongPub}) is not in ${fleet} cache.publicKeys`,
    );
    await expect(readdir(cache)).rejects.toThrow(/ENOENT/);
  });
});

describe("a cache poisoned by the wrong key", () => {
  it("fails verify and Nix, and push --resign repairs it, keeping the other signatures", async () => {
    const cache = join(work, "poisoned");
    const fleet = await fleetFor(cache);
    // Pushed without a fleet, with a key the hosts do not trust.
    const poisoned = await nixship(["push", root, "--to", `file://${cache}`, "--key", wrongKey]);
    expect(poisoned.code, poisoned.stderr).toBe(0);
    const paths = (await narinfos(cache)).size;
    expect(paths).toBeGreaterThan(1);

    // The right key finds every path there, and adds nothing: the hosts still refuse them.
    const again = await nixship(["push", root, "--fleet", fleet, "--key", rightKey, "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({
      pushed: 0,
      alreadyPresent: paths,
      resigned: 0,
    });
    const before = await nixship([
      "verify",
      "--cache",
      `file://${cache}`,
      "--trusted-key",
      rightPub,
      "--json",
    ]);
    expect(before.code).toBe(1);
    const problems = JSON.parse(before.stdout).problems as { path: string; kind: string }[];
    expect(problems.filter((p) => p.kind === "signature")).toHaveLength(paths);
    expect(
      (await nixCopyFrom(`file://${cache}`, join(work, "nix-before"), rightPub, root)).code,
    ).not.toBe(0);

    const repaired = await nixship(["push", root, "--fleet", fleet, "--key", rightKey, "--resign"]);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(repaired.stderr).toContain(
      `(${paths} already in the cache, ${paths} of them re-signed)`,
    );
    for (const text of (await narinfos(cache)).values()) {
      expect(text).toMatch(/^Sig: laptop-1:/m);
      expect(text).toMatch(/^Sig: fleet-cache-1:/m);
    }
    const after = await nixship([
      "verify",
      "--cache",
      `file://${cache}`,
      "--trusted-key",
      rightPub,
    ]);
    expect(after.code, after.stdout + after.stderr).toBe(0);
    const copied = await nixCopyFrom(`file://${cache}`, join(work, "nix-after"), rightPub, root);
    expect(copied.code, copied.stderr).toBe(0);

    // Once signed, a second --resign signs nothing again.
    const twice = await nixship([
      "push",
      root,
      "--fleet",
      fleet,
      "--key",
      rightKey,
      "--resign",
      "--json",
    ]);
    expect(JSON.parse(twice.stdout)).toMatchObject({ pushed: 0, resigned: 0 });
  });

  it("never signs a narinfo that does not describe what the local store holds", async () => {
    const cache = join(work, "planted");
    const pushed = await nixship(["push", root, "--to", `file://${cache}`, "--key", wrongKey]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const [name, text] = [...(await narinfos(cache))][0] as [string, string];
    // A narinfo changed in the cache (its size no longer the local path's).
    const planted = text.replace(
      /^NarSize: (\d+)$/m,
      (_, n: string) => `NarSize: ${Number(n) + 1}`,
    );
    await writeFile(join(cache, name), planted);
    const fleet = await fleetFor(cache);
    const r = await nixship(["push", root, "--fleet", fleet, "--key", rightKey, "--resign"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      "since the cache's narinfo does not describe what the local store holds",
    );
    expect(r.stderr).toMatch(/NarSize \d+ there, \d+ here/);
    expect(await readFile(join(cache, name), "utf8")).toBe(planted);
    // Nothing else was signed either: the refusal comes before any write.
    for (const t of (await narinfos(cache)).values())
      expect(t).not.toMatch(/^Sig: fleet-cache-1:/m);
  });

  it("a deploy whose system the cache holds signed only by a key the hosts no longer trust signs it with its own first", async () => {
    const cache = join(work, "rotated");
    // Pushed with a key the fleet has since dropped (the hosts trust only the right one now).
    const old = await nixship(["push", root, "--to", `file://${cache}`, "--key", wrongKey]);
    expect(old.code, old.stderr).toBe(0);
    const paths = (await narinfos(cache)).size;
    const [releaseKey, releasePub] = await makeKey("rotated-release-1");
    const fleet = join(work, "fleet-rotated-agents.json");
    await writeFile(
      fleet,
      JSON.stringify({
        cache: { url: `file://${cache}`, publicKeys: [rightPub] },
        releases: { channel: "prod", publicKeys: [releasePub] },
        hosts: { web1: { delivery: "agent", system: root } },
      }),
    );
    // An agent host: the deploy publishes its release and returns (no host is reached).
    const r = await nixship([
      "deploy",
      "--fleet",
      fleet,
      "--key",
      rightKey,
      "--release-key",
      releaseKey,
      "--async",
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const done = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((e) => e.type === "push-done");
    expect(done).toMatchObject({ pushed: 0, alreadyPresent: paths, resigned: paths });
    for (const text of (await narinfos(cache)).values()) {
      expect(text).toMatch(/^Sig: laptop-1:/m);
      expect(text).toMatch(/^Sig: fleet-cache-1:/m);
    }
  });
});
