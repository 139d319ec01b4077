import { describe, expect, it } from "vitest";
import {
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  parsePublicKey,
  parseSecretKey,
  publicKeyOf,
  signDetached,
  verifyDetached,
} from "./keys.js";

// Made by `nix key generate-secret --key-name test-1` / `nix key convert-secret-to-public`.
const NIX_PUBLIC = "test-1:gg+Ac3acg1MrhtcaQbc+nJHt6RomHydolRU4aAZWcPo=";

describe("keys", () => {
  it("says what in a key is not base64, rather than 'must hold 64 bytes, found 64'", () => {
    // A key whose base64 holds '+' or '/', which base64url writes as '-' and '_' (one in 15
    // random keys has neither: its base64url form would be its base64 without the padding).
    let secret = formatSecretKey(generateSecretKey("k1"));
    for (let tries = 0; !/[+/]/.test(secret) && tries < 1000; tries++) {
      secret = formatSecretKey(generateSecretKey("k1"));
    }
    const body = secret.slice("k1:".length);
    expect(body).toMatch(/[+/]/);
    const cases: [string, RegExp][] = [
      [
        `${secret}\n${formatSecretKey(generateSecretKey("k2"))}`,
        /a space or a line break inside it/,
      ],
      [`k1:${body.slice(0, 40)} ${body.slice(40)}`, /a space or a line break inside it/],
      [`k1:${Buffer.from(body, "base64").toString("base64url")}`, /'-' or '_' \(base64url's\)/],
      ["k1:", /nothing after 'NAME:'/],
    ];
    for (const [text, expected] of cases) {
      let message = "";
      try {
        parseSecretKey(text);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/^secret key 'k1' is not one key in base64: it has /);
      expect(message).toMatch(expected);
      // The key's text is never shown.
      expect(message).not.toContain(body.slice(0, 12));
    }
    expect(() => parsePublicKey("k1:gg+Ac3acg1MrhtcaQbc+nJHt6RomHydolRU4aAZWcPo=x")).toThrow(
      /^public key 'k1' is not one key in base64: it has characters base64 does not use$/,
    );
  });

  it("generates a key whose file form round-trips and has no trailing newline", () => {
    const key = generateSecretKey("cache.example.org-1");
    const text = formatSecretKey(key);
    expect(text.endsWith("\n")).toBe(false);
    expect(text).toMatch(/^cache\.example\.org-1:[A-Za-z0-9+/]{86}==$/);
    const again = parseSecretKey(text);
    expect(formatPublicKey(publicKeyOf(again))).toBe(formatPublicKey(publicKeyOf(key)));
  });

  it("signs and verifies, and tells an untrusted key from a bad signature", () => {
    const key = generateSecretKey("k1");
    const other = generateSecretKey("k2");
    const sig = signDetached(key, "1;/nix/store/x;sha256:y;1;");
    expect(verifyDetached(sig, "1;/nix/store/x;sha256:y;1;", [publicKeyOf(key)])).toEqual({
      ok: true,
      keyName: "k1",
    });
    expect(verifyDetached(sig, "tampered", [publicKeyOf(key)])).toEqual({
      ok: false,
      reason: "bad-signature",
    });
    expect(verifyDetached(sig, "1;/nix/store/x;sha256:y;1;", [publicKeyOf(other)])).toEqual({
      ok: false,
      reason: "untrusted-key",
    });
    expect(verifyDetached("k1:AAAA", "m", [publicKeyOf(key)])).toEqual({
      ok: false,
      reason: "malformed",
    });
  });

  it("parses a public key made by nix", () => {
    expect(parsePublicKey(NIX_PUBLIC).name).toBe("test-1");
    expect(parsePublicKey(`${NIX_PUBLIC}\n`).bytes.length).toBe(32);
  });

  it("rejects malformed keys with a message naming the problem", () => {
    expect(() => parsePublicKey("nocolon")).toThrow(/must look like 'NAME:BASE64'/);
    expect(() => parsePublicKey("k:AAAA")).toThrow(/public key 'k' must hold 32 bytes/);
    expect(() => parseSecretKey(NIX_PUBLIC)).toThrow(/secret key 'test-1' must hold 64 bytes/);
    expect(() => generateSecretKey("a b")).toThrow(/without ':' or spaces/);
  });

  it("never shows a secret file's text: not before its first ':', nor another kind of key's", () => {
    const messageOf = (text: string) => {
      try {
        parseSecretKey(text);
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error("parsed");
    };
    // A file of credentials given as --key: what precedes the first ':' is a password here.
    const creds = messageOf("hunter2-db-password\nuser=admin\nurl=postgres://x:pw@h/db\n");
    expect(creds).toBe("secret key must look like 'NAME:BASE64' (its text is not shown)");
    expect(messageOf("AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ")).toBe(
      "secret key must look like 'NAME:BASE64' (a Nix signing key); this holds an age identity (its text is not shown)",
    );
    expect(
      messageOf("# created: 2026-11-28T10:00:00Z\n# public key: age1xyz\nAGE-SECRET-KEY-1QQQQ\n"),
    ).toContain("this holds an age identity");
    expect(messageOf("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n")).toContain(
      "this holds a PEM or OpenSSH private key",
    );
    // A name that is one is shown: it is not secret, and says which key is wrong.
    expect(messageOf("cache-1:AAAA")).toBe(
      "secret key 'cache-1' must hold 64 bytes of base64, found 3",
    );
  });

  it("a secret key where a public one belongs: says so, and how to get the public half", () => {
    const secret = formatSecretKey(generateSecretKey("cache-1"));
    expect(() => parsePublicKey(secret)).toThrow(
      "public key 'cache-1' must hold 32 bytes of base64, found 64: this is a secret key; give its public half ('nixship key public FILE')",
    );
  });

  it("rejects a secret key whose halves do not match", () => {
    const a = generateSecretKey("k");
    const b = generateSecretKey("k");
    const mixed = Buffer.concat([
      Buffer.from(a.bytes.subarray(0, 32)),
      Buffer.from(b.bytes.subarray(32)),
    ]);
    expect(() => parseSecretKey(`k:${mixed.toString("base64")}`)).toThrow(
      /public half does not match/,
    );
  });
});
