import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateSecretKey, publicKeyOf, signDetached, verifyDetached } from "../nix/keys.js";
import type { StorePath } from "../nix/store-path.js";
import {
  checkExpiry,
  checkSequence,
  isNewer,
  RELEASE_SIGNATURE_CONTEXT,
  type Release,
} from "./release.js";
import { canonicalJson, releaseSignedMessage } from "./release-canonical.js";
import { parseRelease } from "./release-parse.js";
import { formatRelease, verifyRelease } from "./release-sign.js";

const path = (c: string, name: string) => `/nix/store/${c.repeat(32)}-${name}` as StorePath;
const WEB1 = path("a", "nixos-system-web1");
const WEB2 = path("b", "nixos-system-web2");
const OTHER = path("c", "nixos-system-evil");

const key = generateSecretKey("release-1");
const trusted = publicKeyOf(key);

const RELEASE: Release = {
  version: 1,
  channel: "prod",
  seq: 3,
  created: "2026-11-21T10:00:00.000Z",
  expires: "2026-11-28T10:00:00.000Z",
  previous: `sha256-${Buffer.alloc(32, 7).toString("base64")}`,
  kind: "deploy",
  action: "switch",
  health: {
    http: [{ url: "http://{address}/health", expectStatus: 200, timeout: 5 }],
    commands: [{ run: "systemctl is-active nginx", timeout: 10 }],
  },
  confirmTimeout: 30,
  hosts: { web1: { path: WEB1 }, web2: { path: WEB2 } },
};

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("utf8");
const bytesOf = (s: string) => new Uint8Array(Buffer.from(s));

/** The stored form of RELEASE as a plain object, to mutate. */
function storedObject(): Record<string, unknown> {
  return JSON.parse(text(formatRelease(RELEASE, key).bytes)) as Record<string, unknown>;
}

/** A mutated stored form, serialised canonically (so only the mutation is wrong). */
function mutated(change: (doc: Record<string, unknown>) => void): Uint8Array {
  const doc = storedObject();
  change(doc);
  return bytesOf(`${canonicalJson(doc)}\n`);
}

describe("canonicalJson", () => {
  it("sorts keys recursively and leaves out whitespace, keeping array order", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: null }, e: "x y" })).toBe(
      '{"a":{"c":null,"d":[3,{"y":2,"z":1}]},"b":1,"e":"x y"}',
    );
  });
});

describe("formatRelease", () => {
  it("stores the fields and signature as one canonical JSON line, with an SRI digest", () => {
    const signed = formatRelease(RELEASE, key);
    const stored = text(signed.bytes);
    expect(stored.endsWith("}\n")).toBe(true);
    expect(stored.indexOf("\n")).toBe(stored.length - 1);
    expect(stored).not.toMatch(/[ \t]"|":\s/);
    const doc = JSON.parse(stored) as Record<string, unknown>;
    expect(Object.keys(doc)).toEqual([...Object.keys(doc)].sort());
    expect(doc.signature).toBe(signed.signature);
    expect(signed.signature).toMatch(/^release-1:[A-Za-z0-9+/]{86}==$/);
    expect(stored).toBe(`${canonicalJson(doc)}\n`);
    expect(signed.digest).toBe(
      `sha256-${createHash("sha256").update(signed.bytes).digest("base64")}`,
    );
    expect(signed.release).toEqual(RELEASE);
  });

  it("gives the same bytes whatever order the fields and hosts were built in", () => {
    const reordered: Release = {
      hosts: { web2: { path: WEB2 }, web1: { path: WEB1 } },
      confirmTimeout: 30,
      health: {
        commands: [{ timeout: 10, run: "systemctl is-active nginx" }],
        http: [{ timeout: 5, expectStatus: 200, url: "http://{address}/health" }],
      },
      action: "switch",
      kind: "deploy",
      previous: RELEASE.previous,
      created: RELEASE.created,
      expires: RELEASE.expires,
      seq: 3,
      channel: "prod",
      version: 1,
    };
    const a = formatRelease(RELEASE, key);
    const b = formatRelease(reordered, key);
    expect(text(b.bytes)).toBe(text(a.bytes));
    expect(b.digest).toBe(a.digest);
  });

  it("leaves out properties that are not release fields", () => {
    const extra = { ...RELEASE, note: "not a field", hosts: { web1: { path: WEB1, x: 1 } } };
    const stored = text(formatRelease(extra as Release, key).bytes);
    expect(stored).not.toContain("note");
    expect(stored).not.toContain('"x"');
  });

  it("refuses to sign a release hosts would refuse to read", () => {
    expect(() => formatRelease({ ...RELEASE, seq: 0 }, key)).toThrow(
      expect.objectContaining({
        code: "release-malformed",
        exitCode: 2,
        message: expect.stringContaining("the release to sign: seq: must be a whole number >= 1"),
      }),
    );
  });

  it("signs the context line and the canonical release without its signature", () => {
    const signed = formatRelease(RELEASE, key);
    const { signature: _, ...fields } = JSON.parse(text(signed.bytes)) as Record<string, unknown>;
    const message = releaseSignedMessage(RELEASE);
    expect(message).toBe(`nixship-release-v1\n${canonicalJson(fields)}`);
    expect(message.startsWith(RELEASE_SIGNATURE_CONTEXT)).toBe(true);
    expect(verifyDetached(signed.signature, message, [trusted]).ok).toBe(true);
    // Without the context line (the shape of any other signed text) the signature is no good.
    expect(verifyDetached(signed.signature, canonicalJson(fields), [trusted]).ok).toBe(false);
  });
});

describe("parseRelease", () => {
  it("reads back what formatRelease wrote", () => {
    const signed = formatRelease(RELEASE, key);
    const parsed = parseRelease(signed.bytes, "releases/prod/3.json");
    expect(parsed).toEqual({
      release: RELEASE,
      signature: signed.signature,
      digest: signed.digest,
      bytes: signed.bytes,
      message: releaseSignedMessage(RELEASE),
    });
  });

  it("reads a rollback that names no host (it withdraws a first wave); a deploy or refresh must name one", () => {
    const empty = formatRelease({ ...RELEASE, kind: "rollback", hosts: {} }, key);
    expect(parseRelease(empty.bytes, "empty").release).toMatchObject({
      kind: "rollback",
      hosts: {},
    });
    for (const kind of ["deploy", "refresh"] as const) {
      expect(() => formatRelease({ ...RELEASE, kind, hosts: {} }, key)).toThrow(
        "hosts: must name at least one host",
      );
    }
  });

  it("carries a host's secrets bundle digests, signed, and refuses malformed ones", () => {
    const secrets = {
      bundle: "a".repeat(64),
      manifest: "b".repeat(64),
      age: path("d", "age-1.1.1"),
    };
    const release: Release = {
      ...RELEASE,
      hosts: { web1: { path: WEB1, secrets }, web2: { path: WEB2 } },
    };
    const signed = formatRelease(release, key);
    expect(text(signed.bytes)).toContain(
      `"web1":{"path":"${WEB1}","secrets":{"age":"${secrets.age}","bundle":"${"a".repeat(64)}","manifest":"${"b".repeat(64)}"}}`,
    );
    const verified = verifyRelease(signed.bytes, [trusted], "channels/prod.json");
    expect(verified.release.hosts.web1).toEqual({ path: WEB1, secrets });
    expect(verified.release.hosts.web2).toEqual({ path: WEB2 });
    // Another bundle named in the stored bytes breaks the signature.
    const swapped = bytesOf(text(signed.bytes).replace("a".repeat(64), "c".repeat(64)));
    expect(() => verifyRelease(swapped, [trusted], "channels/prod.json")).toThrow(
      expect.objectContaining({ code: "release-bad-signature" }),
    );
    for (const [bad, problem] of [
      [{ bundle: "A".repeat(64), manifest: "b".repeat(64) }, "hosts.web1.secrets.bundle"],
      [{ bundle: "a".repeat(64) }, "hosts.web1.secrets.manifest"],
      [
        { bundle: "a".repeat(64), manifest: "b".repeat(64), age: "/tmp/age" },
        "hosts.web1.secrets.age",
      ],
      [{ bundle: "a".repeat(64), manifest: "b".repeat(64), key: 1 }, "hosts.web1.secrets.key"],
    ] as const) {
      const bytes = mutated((doc) => {
        (doc.hosts as Record<string, unknown>).web1 = { path: WEB1, secrets: bad };
      });
      expect(() => parseRelease(bytes, "r.json"), problem).toThrow(problem);
    }
  });

  it("carries a host's delta tool, signed, beside its secrets or alone, and refuses a malformed one", () => {
    const tool = path("g", "zstd-1.5.6");
    const secrets = { bundle: "a".repeat(64), manifest: "b".repeat(64) };
    const release: Release = {
      ...RELEASE,
      hosts: {
        web1: { path: WEB1, deltaTool: tool },
        web2: { path: WEB2, secrets, deltaTool: tool },
        web3: { path: OTHER },
      },
    };
    const signed = formatRelease(release, key);
    expect(text(signed.bytes)).toContain(`"web1":{"deltaTool":"${tool}","path":"${WEB1}"}`);
    const verified = verifyRelease(signed.bytes, [trusted], "channels/prod.json");
    expect(verified.release.hosts).toEqual(release.hosts);
    // Another tool named in the stored bytes breaks the signature.
    const swapped = bytesOf(text(signed.bytes).replace(tool, path("h", "zstd-1.5.6")));
    expect(() => verifyRelease(swapped, [trusted], "channels/prod.json")).toThrow(
      expect.objectContaining({ code: "release-bad-signature" }),
    );
    for (const bad of ["/tmp/zstd", 3, ""]) {
      const bytes = mutated((doc) => {
        (doc.hosts as Record<string, unknown>).web1 = { path: WEB1, deltaTool: bad };
      });
      expect(() => parseRelease(bytes, "r.json"), String(bad)).toThrow("hosts.web1.deltaTool");
    }
  });

  it("reads an unsigned release, whose signature is undefined", () => {
    const bytes = mutated((doc) => {
      delete doc.signature;
    });
    expect(parseRelease(bytes, "x").signature).toBeUndefined();
  });

  it.each<[string, (doc: Record<string, unknown>) => void, string]>([
    ["an unknown key", (d) => Object.assign(d, { extra: 1 }), "extra: unknown key"],
    [
      "a typo in a host entry",
      (d) => {
        d.hosts = { web1: { pth: WEB1 } };
      },
      'hosts.web1.pth: unknown key (did you mean "path"?)',
    ],
    [
      "a missing field",
      (d) => {
        delete d.kind;
      },
      "kind: is required",
    ],
    // Version 2 is a sharded release's head (release-shard.test.ts): shards, not hosts.
    ["version 3", (d) => Object.assign(d, { version: 3 }), "version: must be 1 or 2"],
    ["version 2 with a hosts map", (d) => Object.assign(d, { version: 2 }), "hosts: unknown key"],
    ["seq 0", (d) => Object.assign(d, { seq: 0 }), "seq: must be a whole number >= 1"],
    ["a fractional seq", (d) => Object.assign(d, { seq: 1.5 }), "seq: must be a whole number"],
    [
      "a string seq",
      (d) => Object.assign(d, { seq: "3" }),
      'seq: must be a whole number >= 1 (got "3")',
    ],
    [
      "a bad channel name",
      (d) => Object.assign(d, { channel: "Prod_1" }),
      "channel: must be a string matching",
    ],
    [
      "a local time",
      (d) => Object.assign(d, { created: "2026-11-21T10:00:00+01:00" }),
      "created: must be a UTC time",
    ],
    [
      "an impossible date",
      (d) => Object.assign(d, { created: "2026-02-30T10:00:00.000Z" }),
      "created: must be a UTC time",
    ],
    [
      "a previous that is no digest",
      (d) => Object.assign(d, { previous: "abc" }),
      "previous: must be null or the sha256-<base64> digest",
    ],
    [
      "an unknown kind",
      (d) => Object.assign(d, { kind: "upgrade" }),
      "kind: must be one of deploy, rollback",
    ],
    [
      "an unknown action",
      (d) => Object.assign(d, { action: "reboot" }),
      "action: must be one of switch, boot, test, dry-activate",
    ],
    [
      "a negative confirmTimeout",
      (d) => Object.assign(d, { confirmTimeout: -1 }),
      "confirmTimeout: must be a whole number >= 0",
    ],
    [
      "a deploy naming no host",
      (d) => Object.assign(d, { hosts: {} }),
      "hosts: must name at least one host",
    ],
    [
      "a bad host name",
      (d) => Object.assign(d, { hosts: { Web1: { path: WEB1 } } }),
      "hosts.Web1: host name must match",
    ],
    [
      "a bad store path",
      (d) => Object.assign(d, { hosts: { web1: { path: "/nix/store/short" } } }),
      "hosts.web1.path: store path '/nix/store/short'",
    ],
    [
      "a path outside the store",
      (d) => Object.assign(d, { hosts: { web1: { path: "/etc/passwd" } } }),
      "hosts.web1.path: store path '/etc/passwd' is not under /nix/store/",
    ],
    [
      "a bad health status",
      (d) =>
        Object.assign(d, {
          health: { http: [{ url: "http://x/", expectStatus: 99, timeout: 5 }], commands: [] },
        }),
      "health.http[0].expectStatus: must be a whole number from 100 to 599",
    ],
    [
      "a bad health URL",
      (d) =>
        Object.assign(d, {
          health: {
            http: [{ url: "http://{host}/", expectStatus: 200, timeout: 5 }],
            commands: [],
          },
        }),
      "health.http[0].url: unknown placeholder {host}",
    ],
    [
      "health without commands",
      (d) => Object.assign(d, { health: { http: [] } }),
      "health.commands: is required",
    ],
    [
      "a signature without a key name",
      (d) => Object.assign(d, { signature: "AAAA" }),
      "signature: must be a string matching",
    ],
    [
      "a short signature",
      (d) => Object.assign(d, { signature: "k:AAAA" }),
      "signature: must hold a 64-byte ed25519 signature",
    ],
  ])("refuses %s, naming the source and the JSON path", (_, change, expected) => {
    const bytes = mutated(change);
    expect(() => parseRelease(bytes, "releases/prod/3.json")).toThrow(
      expect.objectContaining({
        code: "release-malformed",
        exitCode: 2,
        message: expect.stringContaining(`releases/prod/3.json: ${expected}`),
      }),
    );
  });

  it("reports every problem at once", () => {
    const bytes = mutated((d) => Object.assign(d, { seq: 0, kind: "x", extra: true }));
    const message = (() => {
      try {
        parseRelease(bytes, "r");
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(message?.split("\n").map((line) => line.split(":")[1])).toEqual([
      " extra",
      " seq",
      " kind",
    ]);
  });

  it.each([
    ["text that is not JSON", bytesOf("not json\n"), "r.json: invalid JSON: unexpected token"],
    ["empty bytes", new Uint8Array(0), "r.json: invalid JSON: the text is empty"],
    ["bytes that are not UTF-8", new Uint8Array([0x7b, 0xff, 0x7d]), "r.json: is not UTF-8 text"],
    ["a JSON array", bytesOf("[]\n"), "r.json: (top level): must be an object"],
    ["a duplicate key", bytesOf('{"seq":1,"seq":2}'), 'duplicate key "seq"'],
  ])("refuses %s with release-malformed", (_, bytes, expected) => {
    expect(() => parseRelease(bytes, "r.json")).toThrow(
      expect.objectContaining({
        code: "release-malformed",
        message: expect.stringContaining(expected),
      }),
    );
  });

  it("refuses a valid release that is not in canonical form, so one release has one digest", () => {
    const doc = storedObject();
    for (const stored of [
      `${JSON.stringify(doc, null, 2)}\n`,
      `${canonicalJson(doc)}`,
      `${canonicalJson(doc)}\n\n`,
      `${JSON.stringify({ version: 1, ...doc })}\n`,
    ]) {
      expect(() => parseRelease(bytesOf(stored), "r")).toThrow(
        expect.objectContaining({
          code: "release-malformed",
          message: expect.stringContaining("r: release 3 of channel prod is not in canonical form"),
        }),
      );
    }
  });

  it("refuses a signed, canonical release with a byte-order mark in front: one release, one form", () => {
    const signed = formatRelease(RELEASE, key);
    const withBom = new Uint8Array([0xef, 0xbb, 0xbf, ...signed.bytes]);
    for (const read of [
      () => parseRelease(withBom, "channels/prod.json"),
      () => verifyRelease(withBom, [trusted], "channels/prod.json"),
    ]) {
      expect(read).toThrow(
        expect.objectContaining({
          code: "release-malformed",
          message:
            "channels/prod.json: starts with a byte-order mark: a release is exactly its canonical bytes",
        }),
      );
    }
    expect(verifyRelease(signed.bytes, [trusted], "channels/prod.json").digest).toBe(signed.digest);
  });
});

describe("verifyRelease", () => {
  const signed = formatRelease(RELEASE, key);

  it("accepts a release signed by one of the trusted keys", () => {
    const others = [publicKeyOf(generateSecretKey("other-1")), trusted];
    expect(verifyRelease(signed.bytes, others, "channels/prod.json")).toEqual(signed);
  });

  it("catches a store path changed in the stored bytes", () => {
    const tampered = bytesOf(text(signed.bytes).replace(WEB2, OTHER));
    expect(text(tampered)).toContain(OTHER);
    expect(() => verifyRelease(tampered, [trusted], "channels/prod.json")).toThrow(
      expect.objectContaining({
        code: "release-bad-signature",
        exitCode: 2,
        message:
          "channels/prod.json: release 3 of channel prod: the signature by key 'release-1' does not match its content",
      }),
    );
  });

  it("catches a changed sequence number and a changed action", () => {
    for (const change of [{ seq: 4 }, { action: "boot" }, { kind: "rollback" }]) {
      const bytes = mutated((d) => Object.assign(d, change));
      expect(() => verifyRelease(bytes, [trusted], "r")).toThrow(
        expect.objectContaining({ code: "release-bad-signature" }),
      );
    }
  });

  it("refuses a release signed by a key that is not trusted, naming the key", () => {
    const foreign = formatRelease(RELEASE, generateSecretKey("intruder-1"));
    expect(() => verifyRelease(foreign.bytes, [trusted], "channels/prod.json")).toThrow(
      expect.objectContaining({
        code: "release-untrusted-key",
        exitCode: 2,
        message:
          "channels/prod.json: release 3 of channel prod is signed by key 'intruder-1', which is not trusted (trusted: release-1)",
      }),
    );
    expect(() => verifyRelease(foreign.bytes, [], "r")).toThrow(/\(trusted: none\)/);
  });

  it("refuses a signature by another key of a trusted name", () => {
    const impostor = formatRelease(RELEASE, generateSecretKey("release-1"));
    expect(() => verifyRelease(impostor.bytes, [trusted], "r")).toThrow(
      expect.objectContaining({ code: "release-bad-signature" }),
    );
  });

  it("refuses a release without a signature", () => {
    const bytes = mutated((d) => {
      delete d.signature;
    });
    expect(() => verifyRelease(bytes, [trusted], "channels/prod.json")).toThrow(
      expect.objectContaining({
        code: "release-unsigned",
        exitCode: 2,
        message: "channels/prod.json: release 3 of channel prod is not signed",
      }),
    );
  });

  it("refuses a narinfo-style signature of the same text made without the context line", () => {
    const bytes = mutated((d) => {
      const { signature: _, ...fields } = d;
      d.signature = signDetached(key, canonicalJson(fields));
    });
    expect(() => verifyRelease(bytes, [trusted], "r")).toThrow(
      expect.objectContaining({ code: "release-bad-signature" }),
    );
  });
});

describe("expires", () => {
  it("is signed: changing it in the stored bytes breaks the signature", () => {
    const signed = formatRelease(RELEASE, key);
    const later = bytesOf(text(signed.bytes).replace(RELEASE.expires, "2027-11-28T10:00:00.000Z"));
    expect(() => verifyRelease(later, [trusted], "r")).toThrow(
      expect.objectContaining({ code: "release-bad-signature" }),
    );
  });

  it("must be a UTC time later than created", () => {
    for (const expires of [RELEASE.created, "2026-11-20T10:00:00.000Z", "next week"]) {
      expect(() => formatRelease({ ...RELEASE, expires }, key)).toThrow(
        expect.objectContaining({
          code: "release-malformed",
          message: expect.stringContaining("expires: must be"),
        }),
      );
    }
  });

  it("checkExpiry: valid until expires, refused from then on, naming the time and the fix", () => {
    expect(checkExpiry(RELEASE, new Date("2026-11-28T09:59:59.999Z"))).toEqual({ ok: true });
    expect(checkExpiry(RELEASE, new Date("2026-11-28T10:00:00.000Z"))).toEqual({
      ok: false,
      message: expect.stringMatching(
        /^release 3 of channel prod expired at 2026-11-28T10:00:00\.000Z \(it is 2026-11-28T10:00:00\.000Z\).*nixship release refresh/,
      ),
    });
  });
});

describe("checkSequence", () => {
  const at = (seq: number, kind: Release["kind"] = "deploy"): Release => ({
    ...RELEASE,
    seq,
    kind,
  });

  it("lets a host with nothing applied, or an older release applied, apply it", () => {
    expect(checkSequence(at(1), undefined)).toEqual({ ok: true });
    expect(checkSequence(at(5), 4)).toEqual({ ok: true });
    expect(checkSequence(at(9), 2)).toEqual({ ok: true });
  });

  it("passes a rollback, which is just a newer release", () => {
    expect(checkSequence(at(6, "rollback"), 5)).toEqual({ ok: true });
  });

  it("tells the release already applied from an older one", () => {
    expect(checkSequence(at(5), 5)).toEqual({ ok: false, reason: "same", seq: 5, lastApplied: 5 });
    expect(checkSequence(at(4), 5)).toEqual({
      ok: false,
      reason: "stale",
      seq: 4,
      lastApplied: 5,
    });
  });

  it("isNewer compares sequence numbers", () => {
    expect(isNewer(at(2), at(1))).toBe(true);
    expect(isNewer(at(2), at(2))).toBe(false);
    expect(isNewer(at(1), at(2))).toBe(false);
    expect(isNewer(at(1), undefined)).toBe(true);
  });
});
