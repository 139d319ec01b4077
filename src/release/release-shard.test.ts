// Sharded releases, pure: which shard holds a host, the form a release is signed in by its
// size, the head and its shards read back, and every way a shard or a head can be wrong.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { doubledRelease } from "../../test/support/doubled-release.js";
import { generateSecretKey, publicKeyOf } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import { headOf, type Release, SHARD_HOSTS } from "./release.js";
import { canonicalJson, releaseDigest } from "./release-canonical.js";
import { parseRelease, parseReleaseHead } from "./release-parse.js";
import {
  joinShards,
  parseShard,
  shardIndex,
  signRelease,
  signShardedRelease,
} from "./release-shard.js";
import {
  formatRelease,
  formatShardedHead,
  verifyRelease,
  verifyReleaseHead,
} from "./release-sign.js";

const key = generateSecretKey("release-1");
const trusted = [publicKeyOf(key)];
const NIX32 = "0123456789abcdfghijklmnpqrsvwxyz";
const pathOf = (i: number) =>
  `/nix/store/${Array.from({ length: 32 }, (_, d) => NIX32[Math.floor(i / 32 ** (d % 4)) % 32]).join("")}-system-${i}` as StorePath;

function release(count: number, seq = 3): Release {
  return {
    version: 1,
    channel: "prod",
    seq,
    created: "2026-11-21T10:00:00.000Z",
    expires: "2026-11-28T10:00:00.000Z",
    previous: null,
    kind: "deploy",
    action: "switch",
    health: { http: [], commands: [] },
    confirmTimeout: 30,
    hosts: Object.fromEntries(
      Array.from({ length: count }, (_, i) => [`host-${i}`, { path: pathOf(i) }]),
    ),
  };
}

/** A shard's stored form, written here from the documented layout. */
function shardText(
  r: Pick<Release, "channel" | "seq">,
  index: number,
  count: number,
  hosts: Release["hosts"],
) {
  const text = canonicalJson({ channel: r.channel, count, hosts, index, seq: r.seq, version: 2 });
  return new Uint8Array(Buffer.from(`${text}\n`));
}

describe("shardIndex", () => {
  it("is the first 4 bytes of sha256(name), big-endian, modulo the shards", () => {
    for (const name of ["web1", "host-17", "db-eu-3"]) {
      const expected = createHash("sha256").update(name).digest().readUInt32BE(0) % 7;
      expect(shardIndex(name, 7)).toBe(expected);
    }
  });

  it("spreads 10,000 names over 40 shards near evenly", () => {
    const sizes = new Array<number>(40).fill(0);
    for (let i = 0; i < 10_000; i++) sizes[shardIndex(`host-${i}`, 40)]++;
    expect(Math.min(...sizes)).toBeGreaterThan(150);
    expect(Math.max(...sizes)).toBeLessThan(350);
  });
});

describe("signRelease", () => {
  it(`signs a release of ${SHARD_HOSTS} hosts whole, exactly as formatRelease (version 1)`, () => {
    const signed = signRelease(release(SHARD_HOSTS), key);
    expect(signed.release.version).toBe(1);
    expect(signed.shards).toBeUndefined();
    expect(
      Buffer.from(signed.bytes).equals(Buffer.from(formatRelease(release(SHARD_HOSTS), key).bytes)),
    ).toBe(true);
  });

  it("signs a release of 600 hosts as a head naming 3 shards, which read back as the release", () => {
    const whole = release(600);
    const signed = signRelease(whole, key);
    expect(signed.release).toEqual({ ...whole, version: 2 });
    const head = verifyReleaseHead(signed.bytes, trusted, "head");
    expect(head.head).toEqual({ ...headOf(whole), version: 2 });
    expect(head.hosts).toBeUndefined();
    expect(head.shards).toEqual(signed.shards?.map(({ digest, hosts }) => ({ digest, hosts })));
    expect(head.digest).toBe(releaseDigest(signed.bytes));
    // Each shard holds the hosts that hash to it, in the documented form.
    for (const shard of signed.shards ?? []) {
      const hosts = Object.fromEntries(
        Object.entries(whole.hosts).filter(([name]) => shardIndex(name, 3) === shard.index),
      );
      expect(Buffer.from(shard.bytes).toString()).toBe(
        Buffer.from(shardText(whole, shard.index, 3, hosts)).toString(),
      );
      expect(shard.digest).toBe(releaseDigest(shard.bytes));
    }
    const bytes = (signed.shards ?? []).map((s) => s.bytes);
    const joined = joinShards(head, bytes, ["s0", "s1", "s2"]);
    expect(joined.release).toEqual(signed.release);
    expect(joined.signature).toBe(signed.signature);
    // The whole-release readers name the shards instead of reading them.
    for (const read of [
      () => parseRelease(signed.bytes, "releases/prod/3.json"),
      () => verifyRelease(signed.bytes, trusted, "releases/prod/3.json"),
    ]) {
      expect(read).toThrow(expect.objectContaining({ code: "release-sharded" }));
    }
  });

  it("keeps the head small whatever the fleet: 10,000 hosts sign as a head of 40 digests", () => {
    const signed = signRelease(release(10_000), key);
    expect(signed.shards).toHaveLength(40);
    expect(signed.bytes.length).toBeLessThan(4096);
  });
});

describe("sharded heads and shards that are wrong", () => {
  const whole = release(600);
  const signed = signRelease(whole, key);
  const head = parseReleaseHead(signed.bytes, "head");
  const shards = (signed.shards ?? []).map((s) => s.bytes);
  const sources = ["k0", "k1", "k2"];

  it("refuses a shard whose bytes do not hash to the digest the head signs", () => {
    const changed = [...shards];
    changed[1] = new Uint8Array(
      Buffer.from(
        Buffer.from(shards[1] as Uint8Array)
          .toString()
          .replace("system-", "systen-"),
      ),
    );
    expect(() => joinShards(head, changed, sources)).toThrow(
      expect.objectContaining({
        code: "release-shard-mismatch",
        message: expect.stringContaining(
          "k1: shard 1 of release 3 of channel prod does not match the digest the signed release names",
        ),
      }),
    );
  });

  it("refuses a head whose shard digests were changed after signing", () => {
    const text = Buffer.from(signed.bytes).toString();
    const other = signed.shards?.[0]?.digest as string;
    const swapped = text.replace(signed.shards?.[1]?.digest as string, other);
    expect(() => verifyReleaseHead(new Uint8Array(Buffer.from(swapped)), trusted, "head")).toThrow(
      expect.objectContaining({ code: "release-bad-signature" }),
    );
  });

  it("refuses a signed head whose shards are not what its hosts call for", () => {
    const few = signRelease(release(200), key);
    const ref = { digest: few.digest, hosts: 200 };
    expect(() => formatShardedHead(headOf(few.release), [ref], key)).toThrow(
      /1 shards of 200 hosts in all: a sharded release names more than 256 hosts/,
    );
    const two = [
      { digest: ref.digest, hosts: 300 },
      { digest: ref.digest, hosts: 300 },
    ];
    expect(() => formatShardedHead(headOf(whole), two, key)).toThrow(
      /2 shards of 600 hosts in all: .* in ceil\(hosts \/ 256\) shards/,
    );
  });

  it("refuses a shard, signed for, that holds a host of another shard or another release", () => {
    // A publisher's mistakes, signed: a host in the wrong shard, and a shard of release 2.
    const split = [0, 1, 2].map((index) =>
      Object.fromEntries(
        Object.entries(whole.hosts).filter(([name]) => shardIndex(name, 3) === index),
      ),
    );
    const [stray] = Object.keys(split[0] ?? {});
    const moved = split.map((hosts) => ({ ...hosts }));
    if (stray === undefined || moved[0] === undefined || moved[1] === undefined) throw new Error();
    moved[1][stray] = moved[0][stray] as Release["hosts"][string];
    delete moved[0][stray];
    const wrong = moved.map((hosts, index) => shardText(whole, index, 3, hosts));
    const refs = wrong.map((bytes, i) => ({
      digest: releaseDigest(bytes),
      hosts: Object.keys(moved[i] ?? {}).length,
    }));
    const badHead = formatShardedHead(headOf(whole), refs, key);
    expect(() => joinShards(badHead, wrong, sources)).toThrow(
      `k1: release 3 of channel prod names host '${stray}' in shard 1, but its shard is 0`,
    );

    const older = split.map((hosts, index) =>
      shardText({ channel: "prod", seq: 2 }, index, 3, hosts),
    );
    const olderRefs = older.map((bytes, i) => ({
      digest: releaseDigest(bytes),
      hosts: Object.keys(split[i] ?? {}).length,
    }));
    const mixed = formatShardedHead(headOf(whole), olderRefs, key);
    expect(() => joinShards(mixed, older, sources)).toThrow(
      "k0: seq: must be 3, as the release says",
    );
  });
});

describe("parseShard (one shard, as every reader checks it: an agent its own)", () => {
  const whole = release(600);
  const signed = signRelease(whole, key);
  const head = parseReleaseHead(signed.bytes, "head");
  const shards = (signed.shards ?? []).map((s) => s.bytes);
  const split = [0, 1, 2].map((index) =>
    Object.fromEntries(
      Object.entries(whole.hosts).filter(([name]) => shardIndex(name, 3) === index),
    ),
  );
  const [mine, other] = Object.keys(split[0] ?? {});
  if (mine === undefined || other === undefined) throw new Error("shard 0 holds two hosts");

  /** A head signed for shards holding `hosts`, and their bytes. */
  function signedFor(hosts: Release["hosts"][], seq = whole.seq) {
    const bytes = hosts.map((h, index) => shardText({ channel: "prod", seq }, index, 3, h));
    const refs = bytes.map((b, i) => ({
      digest: releaseDigest(b),
      hosts: Object.keys(hosts[i] ?? {}).length,
    }));
    return { head: formatShardedHead(headOf(whole), refs, key), bytes };
  }

  it("gives the shard's entries", () => {
    expect(parseShard(shards[0] as Uint8Array, head, 0, "k0")).toEqual(split[0]);
  });

  it("refuses a shard that does not match its signed digest, or is of another release", () => {
    const changed = new Uint8Array(
      Buffer.from(
        Buffer.from(shards[0] as Uint8Array)
          .toString()
          .replace("system-", "systen-"),
      ),
    );
    expect(() => parseShard(changed, head, 0, "k0")).toThrow(
      expect.objectContaining({ code: "release-shard-mismatch" }),
    );
    const older = signedFor(split, 2);
    expect(() => parseShard(older.bytes[0] as Uint8Array, older.head, 0, "k0")).toThrow(
      "k0: seq: must be 3, as the release says",
    );
  });

  it("refuses a shard with any malformed entry, whichever host reads it", () => {
    const bad = split.map((hosts) => ({ ...hosts }));
    (bad[0] as Record<string, unknown>)[other] = { path: "/tmp/not-a-store-path" };
    const { head: badHead, bytes } = signedFor(bad);
    expect(() => parseShard(bytes[0] as Uint8Array, badHead, 0, "k0")).toThrow(
      new RegExp(`k0: hosts\\.${other}\\.path`),
    );
    expect(() => joinShards(badHead, bytes, ["k0", "k1", "k2"])).toThrow(/k0: hosts\./);
  });

  it("refuses a shard signed for but not in canonical form: a space, or a byte-order mark", () => {
    const { head: h, bytes } = signedFor(split);
    const text = Buffer.from(bytes[0] as Uint8Array).toString();
    for (const variant of [text.replace('"count":', '"count": '), `\uFEFF${text}`]) {
      const b = new Uint8Array(Buffer.from(variant));
      const refs = h.shards.map((r, i) => (i === 0 ? { ...r, digest: releaseDigest(b) } : r));
      const signedHead = formatShardedHead(headOf(whole), refs, key);
      expect(() => parseShard(b, signedHead, 0, "k0")).toThrow(
        expect.objectContaining({
          code: "release-malformed",
          message: expect.stringContaining(
            "k0: shard 0 of release 3 of channel prod is not in canonical form",
          ),
        }),
      );
    }
  });

  it("checks the number of hosts the signed head gives the shard", () => {
    const { head: h, bytes } = signedFor(split);
    const fewer = { ...h, shards: h.shards.map((r, i) => (i === 0 ? { ...r, hosts: 1 } : r)) };
    expect(() => parseShard(bytes[0] as Uint8Array, fewer, 0, "k0")).toThrow(
      /k0: hosts: names \d+ hosts; the release says 1/,
    );
  });
});

describe("a host named twice", () => {
  const whole = release(600);
  const host = "host-7";
  const sources = ["k0", "k1", "k2"];

  it("in two shards: refused by the whole reader and by the check of the other shard, with one error naming the host and both shards", async () => {
    const { head, shards, own, other } = await doubledRelease(whole, key, host);
    const error = {
      code: "release-host-twice",
      message: `k${other}: release 3 of channel prod names host '${host}' in shard ${other}, but its shard is ${own} (the first 4 bytes of sha256 of its name, modulo 3): a host is named once, in its own shard`,
    };
    const bytes = shards.map((s) => s.bytes);
    expect(() => joinShards(head, bytes, sources)).toThrow(expect.objectContaining(error));
    // The check of that one shard refuses it, as every full reader runs it, and the agents of
    // that shard (each agent checks its own shard only).
    const read = () => parseShard(bytes[other] as Uint8Array, head, other, `k${other}`);
    expect(read).toThrow(expect.objectContaining(error));
  });

  it("in one shard: refused by the whole reader and the check of that shard alike, naming the host and the shard", async () => {
    const { shards } = await doubledRelease(whole, key, host);
    const own = shardIndex(host, 3);
    const text = Buffer.from(shards[own]?.bytes as Uint8Array).toString();
    const entry = `"${host}":${canonicalJson(whole.hosts[host])}`;
    expect(text).toContain(entry);
    // The same name twice in the shard's text: JSON.parse would keep the last entry.
    const twice = new Uint8Array(Buffer.from(text.replace(entry, `${entry},${entry}`)));
    const refs = shards.map((s, i) => (i === own ? { ...s, digest: releaseDigest(twice) } : s));
    const signed = formatShardedHead(headOf(whole), refs, key);
    const bytes = shards.map((s, i) => (i === own ? twice : s.bytes));
    const error = {
      code: "release-host-twice",
      message: `k${own}: release 3 of channel prod names host '${host}' twice in shard ${own}`,
    };
    expect(() => joinShards(signed, bytes, sources)).toThrow(expect.objectContaining(error));
    expect(() => parseShard(twice, signed, own, `k${own}`)).toThrow(expect.objectContaining(error));
  });

  it("is refused at publish: the shards are read back as readers read them before the head is signed", async () => {
    const { shards, own, other } = await doubledRelease(whole, key, host);
    expect(() => signShardedRelease(headOf(whole), shards, key)).toThrow(
      expect.objectContaining({
        code: "release-host-twice",
        message: expect.stringContaining(
          `shard ${other} to sign: release 3 of channel prod names host '${host}' in shard ${other}, but its shard is ${own}`,
        ),
      }),
    );
    // The shards nixship makes from a hosts map pass the same check.
    expect(signRelease(whole, key).shards).toHaveLength(3);
  });

  it("in a release of one file: refused naming the host", () => {
    const one = release(3);
    const text = Buffer.from(formatRelease(one, key).bytes).toString();
    const entry = `"host-1":${canonicalJson(one.hosts["host-1"])}`;
    const twice = new Uint8Array(Buffer.from(text.replace(entry, `${entry},${entry}`)));
    expect(() => parseReleaseHead(twice, "r.json")).toThrow(
      expect.objectContaining({
        code: "release-host-twice",
        message: "r.json: release 3 of channel prod names host 'host-1' twice",
      }),
    );
  });
});
