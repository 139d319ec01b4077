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
