// nixship's age API: recipients, the recorded recipient set, identities of both kinds, and the two
// ways decryption fails. Keys come from typage and ssh-keygen; nothing is mocked.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { armor, generateHybridIdentity, identityToRecipient } from "age-encryption";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, NixshipError, OperationError } from "../errors.js";
import {
  type AgeIdentity,
  decryptSecret,
  encryptSecret,
  generateAgeIdentity,
  parseIdentities,
  parseRecipient,
  readAgeHeader,
  recipientsDigest,
} from "./age.js";

interface SshKey {
  readonly privateText: string;
  readonly publicLine: string;
}

let dir: string;
function sshKeygen(name: string, args: string[]): SshKey {
  const path = join(dir, name);
  execFileSync("ssh-keygen", ["-q", ...args, "-C", `${name}@test`, "-f", path]);
  return {
    privateText: readFileSync(path, "utf8"),
    publicLine: readFileSync(`${path}.pub`, "utf8").trim(),
  };
}

let host: SshKey;
let otherHost: SshKey;
let encryptedKey: SshKey;
let rsaKey: SshKey;
let ecdsaKey: SshKey;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nixship-age-"));
  host = sshKeygen("host", ["-t", "ed25519", "-N", ""]);
  otherHost = sshKeygen("other", ["-t", "ed25519", "-N", ""]);
  encryptedKey = sshKeygen("locked", ["-t", "ed25519", "-N", "pass"]);
  rsaKey = sshKeygen("rsa", ["-t", "rsa", "-b", "2048", "-N", ""]);
  ecdsaKey = sshKeygen("ecdsa", ["-t", "ecdsa", "-N", ""]);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PLAINTEXT = new TextEncoder().encode("db-password=hunter2\n");

/** What a thrown NixshipError says, for checks on class, code, and text. */
async function failure(run: () => unknown): Promise<NixshipError> {
  try {
    await run();
  } catch (err) {
    if (err instanceof NixshipError) return err;
    throw err;
  }
  throw new Error("expected a failure");
}

/** No 12-character run of the secret's own lines (past fixed prefixes) appears in the error. */
function expectNoKeyMaterial(err: NixshipError, secretText: string): void {
  const said = `${err.message}\n${err.hint ?? ""}`;
  for (const raw of secretText.split("\n")) {
    const line = raw.startsWith("-----") ? "" : raw.replace(/^AGE-SECRET-KEY-1/i, "");
    for (let i = 0; i + 12 <= line.length; i++) {
      expect(said).not.toContain(line.slice(i, i + 12));
    }
  }
}

function flipByte(bytes: Uint8Array, index: number): Uint8Array {
  const out = new Uint8Array(bytes);
  out[index] = (out[index] as number) ^ 1;
  return out;
}

/** Replaces one character of the textual header with another of the same alphabet. */
function swapHeaderChar(file: Uint8Array, marker: string, offset: number): Uint8Array {
  const at = Buffer.from(file).indexOf(marker) + marker.length + offset;
  const out = new Uint8Array(file);
  out[at] = out[at] === 0x61 ? 0x62 : 0x61; // 'a' <-> 'b', valid in hex and base64 alike
  return out;
}

describe("parseRecipient", () => {
  it("reads age1 recipients, canonically lower-case", async () => {
    const { recipient } = await generateAgeIdentity();
    expect(parseRecipient(recipient, "fleet.hosts.a")).toEqual({ kind: "x25519", text: recipient });
    expect(parseRecipient(`  ${recipient.toUpperCase()}\n`, "w").text).toBe(recipient);
  });

  it("reads ssh-ed25519 keys, dropping the comment and computing the tag", () => {
    const r = parseRecipient(host.publicLine, "fleet.hosts.web1.hostKey");
    const [type, body] = host.publicLine.split(" ");
    expect(r.kind).toBe("ssh-ed25519");
    expect(r.text).toBe(`${type} ${body}`);
    const tag = sha256(Buffer.from(body as string, "base64")).subarray(0, 4);
    expect(r.sshTag).toBe(Buffer.from(tag).toString("base64").replace(/=+$/, ""));
  });

  it("refuses other inputs with a bad-recipient error naming where", async () => {
    const { identity, recipient } = await generateAgeIdentity();
    const pqRecipient = await identityToRecipient(await generateHybridIdentity());
    const swapped = recipient.slice(0, -1) + (recipient.endsWith("q") ? "p" : "q");
    const cases: [string, RegExp][] = [
      ["", /empty/],
      [rsaKey.publicLine, /only ssh-ed25519 host keys and age1 recipients/],
      [ecdsaKey.publicLine, /ecdsa-sha2-nistp256 key cannot be a recipient/],
      ["hello world", /not a recipient: only ssh-ed25519 host keys and age1 recipients/],
      [swapped, /malformed.*checksum/],
      [`${recipient.slice(0, 10)}${recipient.slice(10).toUpperCase()}`, /malformed/],
      [pqRecipient, /post-quantum age1pq1 recipients are not supported/],
      [`ssh-ed25519 ${host.publicLine.split(" ")[1]?.slice(0, 40)}`, /ssh-ed25519 recipient/],
      [identity, /secret key, not a recipient/],
    ];
    for (const [text, what] of cases) {
      const err = await failure(() => parseRecipient(text, "fleet.hosts.db1.hostKey"));
      expect(err).toBeInstanceOf(InputError);
      expect(err.code).toBe("bad-recipient");
      expect(err.message).toMatch(/^fleet\.hosts\.db1\.hostKey: /);
      expect(err.message).toMatch(what);
    }
    const leaked = await failure(() => parseRecipient(identity, "w"));
    expectNoKeyMaterial(leaked, identity);
  });
});

describe("recipientsDigest", () => {
  it("is the sha256 of the sorted, deduplicated canonical texts, whatever the order", async () => {
    const a = parseRecipient((await generateAgeIdentity()).recipient, "a");
    const b = parseRecipient(host.publicLine, "b");
    const c = parseRecipient(otherHost.publicLine, "c");
    const digest = recipientsDigest([a, b, c]);
    expect(recipientsDigest([c, a, b, a])).toBe(digest);
    const expected = [a.text, b.text, c.text].sort().join("\n");
    expect(digest).toBe(bytesToHex(sha256(new TextEncoder().encode(expected))));
    expect(recipientsDigest([a, b])).not.toBe(digest);
  });
});

describe("encryptSecret and readAgeHeader", () => {
  it("records the recipient set, ssh tags and X25519 count in the header", async () => {
    const x1 = parseRecipient((await generateAgeIdentity()).recipient, "x1");
    const x2 = parseRecipient((await generateAgeIdentity()).recipient, "x2");
    const s1 = parseRecipient(host.publicLine, "s1");
    const s2 = parseRecipient(otherHost.publicLine, "s2");
    const file = await encryptSecret(PLAINTEXT, [s1, x1, s2, x2, x1]);
    expect(Buffer.from(file.subarray(0, 22)).toString()).toBe("age-encryption.org/v1\n");
    const header = await readAgeHeader(file, "secrets/db.age");
    expect(header.recipientsDigest).toBe(recipientsDigest([x1, x2, s1, s2]));
    expect(header.sshTags).toEqual([s1.sshTag, s2.sshTag]);
    expect(header.x25519Count).toBe(2);
    expect(header.stanzas.map((s) => s.type)).toEqual([
      "ssh-ed25519",
      "X25519",
      "ssh-ed25519",
      "X25519",
      "nixship-recipients",
    ]);
    expect(header.stanzas[4]?.args).toEqual([header.recipientsDigest]);
    expect(await readAgeHeader(new TextEncoder().encode(armor.encode(file)), "armored")).toEqual(
      header,
    );
  });

  it("refuses an empty recipient list", async () => {
    const err = await failure(() => encryptSecret(PLAINTEXT, []));
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe("no-recipients");
  });

  it("refuses what is not an age file, and a header over 64 KiB, naming where", async () => {
    const stanzaBody = `${"A".repeat(64)}\n`.repeat(1100);
    const huge = `age-encryption.org/v1\n-> big\n${stanzaBody}\n--- ${"A".repeat(43)}\n`;
    const cases: [string, RegExp][] = [
      ["hello\n", /not an age-encryption\.org\/v1 file/],
      ["age-encryption.org/v2\n", /unsupported version/],
      ["age-encryption.org/v1\n--- AAAA\n", /malformed at line 2/],
      ["age-encryption.org/v1\n-> X25519 abc\n", /ends early/],
      [huge, /larger than 64 KiB/],
      ["-----BEGIN AGE ENCRYPTED FILE-----\n!!!\n-----END AGE ENCRYPTED FILE-----\n", /armor/],
    ];
    for (const [text, what] of cases) {
      const err = await failure(() =>
        readAgeHeader(new TextEncoder().encode(text), "secrets/x.age"),
      );
      expect(err).toBeInstanceOf(InputError);
      expect(err.code).toBe("not-age");
      expect(err.message).toMatch(/^secrets\/x\.age: /);
      expect(err.message).toMatch(what);
    }
  });
});

describe("identities and decryptSecret", () => {
  it("parses an identity file of several keys with comments", async () => {
    const a = await generateAgeIdentity();
    const b = await generateAgeIdentity();
    const text = `# created: today\n# public key: ${a.recipient}\n${a.identity}\n\n  ${b.identity}  \n`;
    const ids = parseIdentities(text, "keys.txt");
    expect(ids.map((i) => i.recipient.text)).toEqual([a.recipient, b.recipient]);
    expect(ids.every((i) => i.kind === "x25519")).toBe(true);
  });

  it("derives an ssh identity's recipient from the private key", () => {
    const [id] = parseIdentities(host.privateText, "/etc/ssh/ssh_host_ed25519_key");
    expect(id?.kind).toBe("ssh-ed25519");
    expect(id?.recipient).toEqual(parseRecipient(host.publicLine, "pub"));
  });

  it("decrypts with either identity kind, binary or armored", async () => {
    const admin = await generateAgeIdentity();
    const recipients = [parseRecipient(admin.recipient, "a"), parseRecipient(host.publicLine, "h")];
    const file = await encryptSecret(PLAINTEXT, recipients);
    const armored = new TextEncoder().encode(armor.encode(file));
    for (const idText of [admin.identity, host.privateText]) {
      const ids = parseIdentities(idText, "id");
      expect(await decryptSecret(file, ids, "db.age")).toEqual(PLAINTEXT);
      expect(await decryptSecret(armored, ids, "db.age")).toEqual(PLAINTEXT);
    }
    const empty = await encryptSecret(new Uint8Array(0), recipients);
    expect(await decryptSecret(empty, parseIdentities(host.privateText, "id"), "e")).toEqual(
      new Uint8Array(0),
    );
  });

  it("says secret-not-for-identity when no identity is a recipient", async () => {
    const admin = await generateAgeIdentity();
    const outsider = await generateAgeIdentity();
    const file = await encryptSecret(PLAINTEXT, [
      parseRecipient(admin.recipient, "a"),
      parseRecipient(host.publicLine, "h"),
    ]);
    for (const idText of [outsider.identity, otherHost.privateText]) {
      const err = await failure(() => decryptSecret(file, parseIdentities(idText, "id"), "db.age"));
      expect(err).toBeInstanceOf(OperationError);
      expect(err.code).toBe("secret-not-for-identity");
      expect(err.message).toMatch(/^db\.age: /);
      expect(err.message).toMatch(/1 ssh-ed25519 and 1 X25519/);
      expectNoKeyMaterial(err, idText);
    }
  });

  it("says secret-corrupt for a flipped byte in the payload or the header", async () => {
    const admin = await generateAgeIdentity();
    const file = await encryptSecret(PLAINTEXT, [
      parseRecipient(admin.recipient, "a"),
      parseRecipient(host.publicLine, "h"),
    ]);
    const tag = parseRecipient(host.publicLine, "h").sshTag as string;
    const tampered = [
      flipByte(file, file.length - 1), // payload
      flipByte(file, file.length - 40),
      swapHeaderChar(file, "-> nixship-recipients ", 5), // the recorded digest
      swapHeaderChar(file, "\n--- ", 10), // the MAC
    ];
    for (const idText of [admin.identity, host.privateText]) {
      const ids = parseIdentities(idText, "id");
      for (const bad of tampered) {
        const err = await failure(() => decryptSecret(bad, ids, "db.age"));
        expect(err).toBeInstanceOf(OperationError);
        expect(err.code).toBe("secret-corrupt");
        expect(err.message).toMatch(/^db\.age: /);
        expect(err.message).not.toContain("hunter2");
      }
    }
    // The ssh stanza is tagged, so a flip in its body is corruption, not "not for you".
    const sshIds = parseIdentities(host.privateText, "id");
    const bodyFlipped = swapHeaderChar(file, `-> ssh-ed25519 ${tag} `, 50);
    expect((await failure(() => decryptSecret(bodyFlipped, sshIds, "db.age"))).code).toBe(
      "secret-corrupt",
    );
    const notAge = new TextEncoder().encode("plain text\n");
    expect((await failure(() => decryptSecret(notAge, sshIds, "db.age"))).code).toBe(
      "secret-corrupt",
    );
  });

  it("refuses passphrase-protected, RSA, ECDSA and garbage identity files without quoting them", async () => {
    const { identity } = await generateAgeIdentity();
    const broken = identity.slice(0, 20) + (identity[20] === "Q" ? "P" : "Q") + identity.slice(21);
    const cases: [string, RegExp][] = [
      [encryptedKey.privateText, /passphrase-protected/],
      [rsaKey.privateText, /ssh-rsa key/],
      [ecdsaKey.privateText, /ecdsa-sha2-nistp256 key/],
      ["-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n", /RSA key/],
      ["just some text\n", /line 1: not an AGE-SECRET-KEY-1/],
      [`# ok\n${identity}\n${broken}\n`, /line 3: malformed AGE-SECRET-KEY-1/],
      ["# only a comment\n\n", /holds no identities/],
      [host.publicLine, /SSH public key/],
      [`${host.privateText}\n${identity}\n`, /not a single OpenSSH private key/],
    ];
    for (const [text, what] of cases) {
      const err = await failure(() => parseIdentities(text, "/run/keys/admin"));
      expect(err).toBeInstanceOf(InputError);
      expect(err.code).toBe("bad-identity");
      expect(err.message).toMatch(/^\/run\/keys\/admin(, line \d+)?: /);
      expect(err.message).toMatch(what);
      expectNoKeyMaterial(err, text);
    }
  });

  it("keeps key material out of an identity's JSON and properties", async () => {
    const { identity } = await generateAgeIdentity();
    for (const text of [identity, host.privateText]) {
      const [id] = parseIdentities(text, "id") as [AgeIdentity];
      expect(JSON.parse(JSON.stringify(id))).toEqual({
        kind: id.kind,
        recipient: { ...id.recipient },
      });
      expect(Object.getOwnPropertyNames(id).sort()).toEqual(["kind", "recipient"]);
    }
  });

  it("generates X25519 identities that parse back to their recipient", async () => {
    const { identity, recipient } = await generateAgeIdentity();
    expect(identity).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
    expect(recipient).toMatch(/^age1[0-9a-z]{58}$/);
    expect(parseIdentities(identity, "id")[0]?.recipient.text).toBe(recipient);
  });
});
