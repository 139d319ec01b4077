import { describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf, signDetached } from "../nix/keys.js";
import { canonicalJson } from "./release-canonical.js";
import {
  checkReleaseOrigin,
  formatReleaseOrigin,
  ORIGIN_SIGNATURE_CONTEXT,
  type Origin,
  readOriginSources,
} from "./release-origin.js";

const key = generateSecretKey("prod-release-1");
const other = generateSecretKey("someone-else-1");
const trusted = [publicKeyOf(key)];
const release = { channel: "prod", seq: 4, digest: `sha256-${"A".repeat(43)}=` };
const origin: Origin = {
  by: "alice@deploybox",
  sources: [{ flake: "/srv/fleet", rev: "a".repeat(40), dirty: true }],
};
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("utf8");
const edited = (bytes: Uint8Array, change: (o: Record<string, unknown>) => void) => {
  const o = JSON.parse(text(bytes)) as Record<string, unknown>;
  change(o);
  return Buffer.from(JSON.stringify(o));
};

describe("a release's origin document", () => {
  it("is trusted when the release key signed it for that release", () => {
    const bytes = formatReleaseOrigin(release, origin, key);
    expect(checkReleaseOrigin(bytes, release, trusted)).toEqual({
      status: "trusted",
      keyName: "prod-release-1",
      ...origin,
    });
  });

  it("is refused when changed in the store after it was signed", () => {
    const bytes = edited(formatReleaseOrigin(release, origin, key), (o) => {
      o.by = "mallory@elsewhere";
    });
    const check = checkReleaseOrigin(bytes, release, trusted);
    expect(check.status).toBe("untrusted");
    expect(JSON.stringify(check)).not.toContain("mallory");
    expect(check).toMatchObject({ problem: expect.stringContaining("does not match") });
  });

  it("is refused beside another release (copied, or the release replaced)", () => {
    const bytes = formatReleaseOrigin(release, origin, key);
    const replaced = { ...release, digest: `sha256-${"B".repeat(43)}=` };
    expect(checkReleaseOrigin(bytes, replaced, trusted)).toMatchObject({
      status: "untrusted",
      problem: expect.stringContaining("not this release"),
    });
    expect(checkReleaseOrigin(bytes, { ...release, seq: 5 }, trusted).status).toBe("untrusted");
  });

  it("is refused when signed by a key that is not trusted, unsigned, or with unknown keys", () => {
    const foreign = formatReleaseOrigin(release, origin, other);
    expect(checkReleaseOrigin(foreign, release, trusted)).toMatchObject({
      status: "untrusted",
      problem: expect.stringContaining("not a trusted release key"),
    });
    const good = formatReleaseOrigin(release, origin, key);
    const unsigned = edited(good, (o) => {
      delete o.signature;
    });
    expect(checkReleaseOrigin(unsigned, release, trusted).status).toBe("untrusted");
    const extra = edited(good, (o) => {
      o.note = "x";
    });
    expect(checkReleaseOrigin(extra, release, trusted).status).toBe("untrusted");
    expect(checkReleaseOrigin(Buffer.from("{"), release, trusted).status).toBe("untrusted");
  });

  it("keeps no control characters, and checks its sources", () => {
    const bytes = formatReleaseOrigin(release, { by: "eve\u001b[2J@box", sources: [] }, key);
    const check = checkReleaseOrigin(bytes, release, trusted);
    expect(check).toMatchObject({ status: "trusted", by: "eve\ufffd[2J@box" });
    expect(readOriginSources([{ flake: "x", rev: "not-a-rev", dirty: null }])).toMatch(/rev/);
    expect(readOriginSources("x")).toMatch(/list/);
  });

  it("never carries a flake URL's credentials, written or read", () => {
    const leaky: Origin = {
      by: "ci@runner",
      sources: [
        { flake: "git+https://bot:ghp_secret@github.com/acme/fleet", rev: null, dirty: null },
      ],
    };
    const bytes = formatReleaseOrigin(release, leaky, key);
    expect(text(bytes)).not.toContain("ghp_secret");
    expect(checkReleaseOrigin(bytes, release, trusted)).toMatchObject({
      status: "trusted",
      sources: [{ flake: "git+https://github.com/acme/fleet" }],
    });
    // A document some other writer stored with one: read without it.
    expect(
      readOriginSources([{ flake: "git+https://u:tok@host/x", rev: null, dirty: null }]),
    ).toEqual([{ flake: "git+https://host/x", rev: null, dirty: null }]);
  });

  it("keeps of a flake's reference only what identifies it, written or read", () => {
    const tokened = [
      "git+https://bot:p@ss_SECRET@github.com/acme/fleet?ref=prod",
      "https://gitlab.example/archive.tar.gz?private_token=glpat-SECRET&narHash=sha256-AAAA",
      "https://bucket.s3.amazonaws.com/f.tar.gz?X-Amz-Credential=AKIASECRET&X-Amz-Signature=SECRET",
    ];
    const shown = [
      "git+https://github.com/acme/fleet?ref=prod",
      "https://gitlab.example/archive.tar.gz?narHash=sha256-AAAA",
      "https://bucket.s3.amazonaws.com/f.tar.gz",
    ];
    const sources = tokened.map((flake) => ({ flake, rev: null, dirty: null }));
    const bytes = formatReleaseOrigin(release, { by: "ci@runner", sources }, key);
    expect(text(bytes)).not.toMatch(/SECRET|glpat|X-Amz/);
    const check = checkReleaseOrigin(bytes, release, trusted);
    expect(check.status === "trusted" && check.sources.map((s) => s.flake)).toEqual(shown);
    // Signed by an older nixship with the tokens in it: trusted as signed, shown without them.
    const fields = {
      by: "ci@runner",
      channel: release.channel,
      release: release.digest,
      seq: release.seq,
      sources,
    };
    const signature = signDetached(key, ORIGIN_SIGNATURE_CONTEXT + canonicalJson(fields));
    const old = Buffer.from(JSON.stringify({ ...fields, signature }));
    const read = checkReleaseOrigin(old, release, trusted);
    expect(read.status).toBe("trusted");
    expect(JSON.stringify(read)).not.toMatch(/SECRET|glpat|X-Amz/);
    expect(read.status === "trusted" && read.sources.map((s) => s.flake)).toEqual(shown);
  });
});
