// The ssh-ed25519 stanza on its own: round trips, a known answer from the age CLI, the tag, and
// refusal of malformed and low-order stanzas.
import { ed25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { Stanza } from "age-encryption";
import { describe, expect, it } from "vitest";
import {
  decodeBase64NoPad,
  encodeBase64NoPad,
  formatSshEd25519PublicKey,
  parseOpenSshPrivateKey,
  parseSshEd25519PublicKeyLine,
  SshEd25519Identity,
  type SshEd25519PrivateKey,
  SshEd25519Recipient,
  sshEd25519PublicKey,
  sshEd25519Tag,
} from "./ssh-ed25519.js";

// A throwaway key from `ssh-keygen -t ed25519 -N '' -C fixture`, and a file age 1.1.1 wrote to it
// with `echo hi | age -R k.pub`; its stanza line reads "-> ssh-ed25519 2w+4Mw …".
const FIXTURE_PUB =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk42LPsD6vP/XfR6eArCZ1mAU1G60ALoILGKPzk1V0Y fixture";
const FIXTURE_TAG = "2w+4Mw";
const FIXTURE_KEY = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDpONiz7A+rz/130engKwmdZgFNRutAC6CCxij85NVdGAAAAJAVGGYEFRhm
BAAAAAtzc2gtZWQyNTUxOQAAACDpONiz7A+rz/130engKwmdZgFNRutAC6CCxij85NVdGA
AAAEA5YCx7kD0divNYfrfnL0wYwCfShF0B6YYgLhVBOlK9Dek42LPsD6vP/XfR6eArCZ1m
AU1G60ALoILGKPzk1V0YAAAAB2ZpeHR1cmUBAgMEBQY=
-----END OPENSSH PRIVATE KEY-----
`;
const FIXTURE_AGE_FILE =
  "YWdlLWVuY3J5cHRpb24ub3JnL3YxCi0+IHNzaC1lZDI1NTE5IDJ3KzRNdyBPQ2VwbllTWFd2bzBYWG8xdDdPZUZxVkh6eFArZEcwUk53QnI4MkQyczBZCmxHV1M3Z1NuTWIvSFhoNjg1UHo4akw1Rmx3Tlp5d05jMlcrTHNzOE00UncKLS0tIFltTngyZEgvZFArRVRMRGhNWlpBbHBuUThsN29uWnpVV3Z6YnVDU0pIZEkKQi5fkrCdO3JkfWFeGBstCuvyo08bAUO1npmDM3WHFi8br5g=";

function freshKey(): SshEd25519PrivateKey {
  const seed = ed25519.utils.randomSecretKey();
  return { seed, publicKey: sshEd25519PublicKey(ed25519.getPublicKey(seed)) };
}

function fixtureKey(): SshEd25519PrivateKey {
  const parsed = parseOpenSshPrivateKey(FIXTURE_KEY);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.value;
}

const FILE_KEY = new Uint8Array(16).map((_, i) => i + 1);

function wrapFor(key: SshEd25519PrivateKey): Stanza {
  const [stanza] = new SshEd25519Recipient(key.publicKey).wrapFileKey(FILE_KEY);
  if (stanza === undefined) throw new Error("no stanza");
  return stanza;
}

describe("ssh-ed25519 stanza", () => {
  it("round-trips a file key and writes the spec's stanza shape", () => {
    const key = freshKey();
    const stanza = wrapFor(key);
    expect(stanza.args).toHaveLength(3);
    expect(stanza.args[0]).toBe("ssh-ed25519");
    expect(stanza.args[1]).toBe(sshEd25519Tag(key.publicKey));
    expect(decodeBase64NoPad(stanza.args[2] as string)).toHaveLength(32);
    expect(stanza.body).toHaveLength(32);
    expect(new SshEd25519Identity(key).unwrapFileKey([stanza])).toEqual(FILE_KEY);
  });

  it("uses a fresh ephemeral share for every wrap", () => {
    const key = freshKey();
    expect(wrapFor(key).args[2]).not.toBe(wrapFor(key).args[2]);
  });

  it("finds its stanza among others and ignores other types", () => {
    const key = freshKey();
    const other = freshKey();
    const stanzas = [
      new Stanza(["X25519", encodeBase64NoPad(new Uint8Array(32).fill(7))], new Uint8Array(32)),
      wrapFor(other),
      new Stanza(["nixship-recipients", "ab"], new Uint8Array(0)),
      wrapFor(key),
    ];
    expect(new SshEd25519Identity(key).unwrapFileKey(stanzas)).toEqual(FILE_KEY);
  });

  it("returns null for a stanza addressed to another key", () => {
    expect(new SshEd25519Identity(freshKey()).unwrapFileKey([wrapFor(freshKey())])).toBeNull();
    expect(new SshEd25519Identity(freshKey()).unwrapFileKey([])).toBeNull();
  });

  it("computes the tag age computes (SHA-256 of the wire key, first 4 bytes)", () => {
    const parsed = parseSshEd25519PublicKeyLine(FIXTURE_PUB);
    if (!parsed.ok) throw new Error(parsed.reason);
    expect(sshEd25519Tag(parsed.value)).toBe(FIXTURE_TAG);
    const wire = Buffer.from(FIXTURE_PUB.split(" ")[1] as string, "base64");
    expect(Buffer.from(parsed.value.wire)).toEqual(wire);
    expect(encodeBase64NoPad(sha256(wire).subarray(0, 4))).toBe(FIXTURE_TAG);
    expect(formatSshEd25519PublicKey(parsed.value)).toBe(FIXTURE_PUB.replace(" fixture", ""));
  });

  it("unwraps the stanza the age CLI wrote, and the key it yields verifies the header MAC", () => {
    const file = Buffer.from(FIXTURE_AGE_FILE, "base64");
    const lines = file.toString("latin1").split("\n");
    const args = (lines[1] as string).slice(3).split(" ");
    const body = decodeBase64NoPad(lines[2] as string) as Uint8Array;
    const fileKey = new SshEd25519Identity(fixtureKey()).unwrapFileKey([new Stanza(args, body)]);
    expect(fileKey).toHaveLength(16);
    const headerNoMac = `${lines.slice(0, 3).join("\n")}\n---`;
    const macKey = hkdf(
      sha256,
      fileKey as Uint8Array,
      undefined,
      new TextEncoder().encode("header"),
      32,
    );
    const mac = hmac(sha256, macKey, new TextEncoder().encode(headerNoMac));
    expect(encodeBase64NoPad(mac)).toBe((lines[3] as string).slice(4));
  });

  it("refuses malformed ssh-ed25519 stanzas, whoever they are addressed to", () => {
    const key = freshKey();
    const good = wrapFor(key);
    const [type, tag, share] = good.args as [string, string, string];
    const identity = new SshEd25519Identity(key);
    const malformed = [
      new Stanza([type, tag], good.body), // no share
      new Stanza([type, tag, share, "extra"], good.body),
      new Stanza([type, tag, share.slice(0, -2)], good.body), // short share
      new Stanza([type, tag, `${share}=`], good.body), // padded base64
      new Stanza([type, `${tag}A`, share], good.body), // 5-byte-ish tag
      new Stanza([type, tag, share], good.body.subarray(0, 31)), // short body
      new Stanza([type, tag, share], new Uint8Array(48)), // long body
      new Stanza([type, "AAAAAA", share], new Uint8Array(31)), // another key's, still malformed
    ];
    for (const stanza of malformed) {
      expect(() => identity.unwrapFileKey([stanza])).toThrow(/malformed ssh-ed25519 stanza/);
    }
  });

  it("refuses non-canonical base64 in the share (the spec's MUST)", () => {
    const key = freshKey();
    const good = wrapFor(key);
    const share = good.args[2] as string;
    // The last of 43 characters carries 2 unused bits; setting one gives the same bytes, non-canonically.
    const last = share.at(-1) as string;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const sloppy = share.slice(0, -1) + (alphabet[alphabet.indexOf(last) | 1] as string);
    expect(Buffer.from(sloppy, "base64")).toEqual(Buffer.from(share, "base64"));
    const stanza = new Stanza(["ssh-ed25519", good.args[1] as string, sloppy], good.body);
    expect(() => new SshEd25519Identity(key).unwrapFileKey([stanza])).toThrow(/malformed/);
  });

  it("refuses a low-order share (which would give an all-zero shared secret)", () => {
    const key = freshKey();
    const tag = sshEd25519Tag(key.publicKey);
    const identity = new SshEd25519Identity(key);
    const lowOrder = [new Uint8Array(32), new Uint8Array(32), new Uint8Array(32).fill(0xff)];
    (lowOrder[1] as Uint8Array)[0] = 1; // u = 1
    (lowOrder[2] as Uint8Array).set([0xec], 0); // u = p - 1
    (lowOrder[2] as Uint8Array)[31] = 0x7f;
    for (const u of lowOrder) {
      const stanza = new Stanza(["ssh-ed25519", tag, encodeBase64NoPad(u)], new Uint8Array(32));
      expect(() => identity.unwrapFileKey([stanza])).toThrow(/low-order/);
    }
  });

  it("treats a stanza with its tag that does not decrypt as an error, not as 'not mine'", () => {
    const key = freshKey();
    const good = wrapFor(key);
    const body = new Uint8Array(good.body);
    body[5] = (body[5] as number) ^ 1;
    const tampered = new Stanza(good.args, body);
    expect(() => new SshEd25519Identity(key).unwrapFileKey([tampered])).toThrow(/does not decrypt/);
    // A genuine stanza later in the header still wins (tags are only 32 bits).
    expect(new SshEd25519Identity(key).unwrapFileKey([tampered, good])).toEqual(FILE_KEY);
  });

  it("keeps key material out of JSON", () => {
    const key = fixtureKey();
    const text = JSON.stringify(new SshEd25519Identity(key));
    expect(text).toBe("{}");
  });
});

describe("SSH key encodings", () => {
  it("parses the OpenSSH private key ssh-keygen wrote, with the matching public key", () => {
    const key = fixtureKey();
    expect(formatSshEd25519PublicKey(key.publicKey)).toBe(FIXTURE_PUB.replace(" fixture", ""));
    expect(ed25519.getPublicKey(key.seed)).toEqual(key.publicKey.key);
  });

  it("refuses a private key whose halves disagree", () => {
    const blob = Buffer.from(FIXTURE_KEY.split("\n").slice(1, -2).join(""), "base64");
    const at = blob.indexOf(Buffer.from("fixture")) - 4 - 64 + 3; // inside the seed
    blob[at] = (blob[at] as number) ^ 1;
    const text = `-----BEGIN OPENSSH PRIVATE KEY-----\n${blob.toString("base64")}\n-----END OPENSSH PRIVATE KEY-----\n`;
    const parsed = parseOpenSshPrivateKey(text);
    expect(parsed.ok).toBe(false);
    expect(parsed.ok ? "" : parsed.reason).toMatch(/does not match its public key/);
  });

  it("refuses truncated and foreign public key lines", () => {
    const body = FIXTURE_PUB.split(" ")[1] as string;
    const cases: [string, RegExp][] = [
      [`ssh-ed25519 ${body.slice(0, -8)}`, /truncated|malformed|canonical/],
      ["ssh-ed25519", /no base64 key/],
      [`ssh-rsa ${body}`, /is a ssh-rsa key/],
      // the ed25519 identity point (y = 1) is of small order
      [
        formatSshEd25519PublicKey(sshEd25519PublicKey(new Uint8Array(32).fill(0).fill(1, 0, 1))),
        /not a usable curve point/,
      ],
    ];
    for (const [line, reason] of cases) {
      const parsed = parseSshEd25519PublicKeyLine(line);
      expect(parsed.ok).toBe(false);
      expect(parsed.ok ? "" : parsed.reason).toMatch(reason);
    }
  });
});
