// The secrets bundle and its manifest digest, byte for byte as activate.sh reads and reports
// them, and the fields it refuses.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import {
  type BundledSecret,
  MAX_SECRETS_BUNDLE,
  secretsBundle,
  secretsManifestDigest,
} from "./secrets-bundle.js";

const sha256 = (data: Uint8Array | string) => createHash("sha256").update(data).digest("hex");

const db: BundledSecret = {
  name: "db-password",
  owner: "postgres",
  group: "postgres",
  mode: "0440",
  path: "/run/keys/db-password",
  ciphertext: new Uint8Array([0x61, 0x67, 0x65, 0x00, 0xff, 0x10]),
};
const api: BundledSecret = {
  name: "api.token",
  owner: "root",
  group: "0",
  mode: "0400",
  path: "/run/secrets/api.token",
  ciphertext: new Uint8Array([1, 2, 3, 4]),
};

describe("secretsBundle", () => {
  it("is the header, then one line per secret sorted by name, each ending in a newline", () => {
    expect(secretsBundle([db, api])).toBe(
      [
        "nixship-secrets 1",
        `api.token root 0 0400 /run/secrets/api.token ${sha256(api.ciphertext)} AQIDBA==`,
        `db-password postgres postgres 0440 /run/keys/db-password ${sha256(db.ciphertext)} YWdlAP8Q`,
        "",
      ].join("\n"),
    );
  });

  it("holds only the header for no secrets", () => {
    expect(secretsBundle([])).toBe("nixship-secrets 1\n");
  });

  it("refuses, as a bug, a field that breaks the rules", () => {
    const bad: Partial<BundledSecret>[] = [
      { name: "a..b" },
      { name: ".hidden" },
      { name: "a/b" },
      { name: "a b" },
      { name: "n".repeat(65) },
      { owner: "Root" },
      { owner: "a".repeat(33) },
      { group: "wheel group" },
      { mode: "400" },
      { mode: "0800" },
      { path: "/var/lib/x" },
      { path: "/run" },
      { path: "/run/" },
      { path: "/run/../etc/shadow" },
      { path: "/run/keys/.x" },
      { path: "run/keys/x" },
      { path: "/run//x" },
      { path: `/run/${"p".repeat(251)}` },
      { ciphertext: new Uint8Array() },
    ];
    for (const change of bad) {
      const attempt = () => secretsBundle([{ ...db, ...change }]);
      expect(attempt, JSON.stringify(change)).toThrow(Error);
      expect(attempt, JSON.stringify(change)).not.toThrow(InputError);
      expect(() => secretsManifestDigest([{ ...db, ...change }])).toThrow(Error);
    }
    // At the limits, accepted.
    expect(() =>
      secretsBundle([
        {
          ...db,
          name: "n".repeat(64),
          owner: `${"a".repeat(31)}$`,
          group: "65534",
          path: `/run/${"p".repeat(250)}`,
        },
      ]),
    ).not.toThrow();
  });

  it("refuses two secrets with one name or one path", () => {
    expect(() => secretsBundle([db, { ...api, name: db.name }])).toThrow(/another secret's/);
    expect(() => secretsBundle([db, { ...api, path: db.path }])).toThrow(/another secret's/);
  });

  it("refuses a bundle over MAX_SECRETS_BUNDLE (8 MiB), as an input error", () => {
    expect(MAX_SECRETS_BUNDLE).toBe(8 * 1024 * 1024);
    const big = { ...db, ciphertext: new Uint8Array(6 * 1024 * 1024 + 1) };
    expect(() => secretsBundle([big])).toThrow(InputError);
    expect(() =>
      secretsBundle([{ ...big, ciphertext: new Uint8Array(6 * 1024 * 1024 - 1024) }]),
    ).not.toThrow();
  });
});

describe("secretsManifestDigest", () => {
  it("is the sha256 of the bundle's lines without BASE64, in bundle order", () => {
    const manifest = secretsBundle([db, api])
      .split("\n")
      .slice(1, -1)
      .map((line) => `${line.split(" ").slice(0, 6).join(" ")}\n`)
      .join("");
    expect(manifest).toBe(
      `api.token root 0 0400 /run/secrets/api.token ${sha256(api.ciphertext)}\n` +
        `db-password postgres postgres 0440 /run/keys/db-password ${sha256(db.ciphertext)}\n`,
    );
    expect(secretsManifestDigest([db, api])).toBe(sha256(manifest));
    expect(secretsManifestDigest([api, db])).toBe(sha256(manifest));
  });

  it("is the sha256 of the empty string for no secrets", () => {
    expect(secretsManifestDigest([])).toBe(
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
  });

  it("changes with any field and with the ciphertext", () => {
    const base = secretsManifestDigest([db]);
    for (const change of [
      { owner: "root" },
      { group: "root" },
      { mode: "0400" },
      { path: "/run/keys/other" },
      { name: "other" },
      { ciphertext: new Uint8Array([9]) },
    ]) {
      expect(secretsManifestDigest([{ ...db, ...change }]), JSON.stringify(change)).not.toBe(base);
    }
  });
});
