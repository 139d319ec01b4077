import { createHmac, generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  HostKeyChangedError,
  type HostKeyEntry,
  keyFingerprint,
  mergeKnownHosts,
} from "./known-hosts.js";

/** A fresh `ssh-ed25519 BASE64` key line. */
function newKey(): string {
  const { publicKey } = generateKeyPairSync("ed25519");
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const field = (b: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(b.length);
    return Buffer.concat([length, b]);
  };
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]).toString("base64")}`;
}

const K1 = newKey();
const K2 = newKey();
const OTHER = newKey();
const RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7";
const FILE = "known_hosts";

const web1 = (key = K1, names = ["3.250.17.21", "10.42.1.11"]): HostKeyEntry => ({
  host: "web1",
  names,
  key,
  source: "Terraform's output ssh_host_public_key",
});

function merged(existing: string | undefined, entries: HostKeyEntry[], replaceChanged = false) {
  const r = mergeKnownHosts(existing, entries, { replaceChanged, file: FILE });
  if (!("merge" in r)) throw new Error(`conflicts: ${JSON.stringify(r.conflicts)}`);
  return r.merge;
}

function conflicts(existing: string, entries: HostKeyEntry[]) {
  const r = mergeKnownHosts(existing, entries, { replaceChanged: false, file: FILE });
  if (!("conflicts" in r)) throw new Error("the merge was accepted");
  return r.conflicts;
}

/** `|1|salt|hash` for a name, as HashKnownHosts writes it. */
function hashed(name: string): string {
  const salt = Buffer.from("0123456789abcdefghij");
  return `|1|${salt.toString("base64")}|${createHmac("sha1", salt).update(name).digest("base64")}`;
}

describe("mergeKnownHosts", () => {
  it("adds a line per host, naming its addresses, marked as nixship's; to no file or an empty one", () => {
    for (const existing of [undefined, ""]) {
      const m = merged(existing, [web1()]);
      expect(m.text).toBe(`3.250.17.21,10.42.1.11 ${K1} nixship:web1\n`);
      expect(m.changed).toBe(true);
      expect(m.hosts).toEqual([
        expect.objectContaining({ host: "web1", change: "added", fingerprint: keyFingerprint(K1) }),
      ]);
    }
  });

  it("keeps every other line as it is: comments, markers, other hosts and key types, a missing final newline", () => {
    const existing = [
      "# my hosts",
      "",
      `@cert-authority *.example.org ${OTHER}`,
      `@revoked * ${K2}`,
      `git.example.org,192.0.2.7 ${OTHER} me@laptop`,
      `10.42.1.11 ${RSA}`,
      `${hashed("192.0.2.9")} ${OTHER}`,
      `10.42.1.* ${OTHER}`,
    ].join("\n");
    const m = merged(existing, [web1()]);
    expect(m.text).toBe(`${existing}\n3.250.17.21,10.42.1.11 ${K1} nixship:web1\n`);
  });

  it("leaves a file that trusts the key for every name unchanged, byte for byte, written by hand or hashed", () => {
    const byHand = `3.250.17.21 ${K1} me\n${hashed("10.42.1.11")} ${K1}`;
    const m = merged(byHand, [web1()]);
    expect(m).toMatchObject({ text: byHand, changed: false });
    expect(m.hosts[0]?.change).toBe("unchanged");
    const ours = `3.250.17.21,10.42.1.11 ${K1} nixship:web1\n`;
    expect(merged(ours, [web1()]).changed).toBe(false);
  });

  it("moves the host's names to one line when an address changed, dropping nixship's old line", () => {
    const existing = `# a\n10.42.1.11,9.9.9.9 ${K1} nixship:web1\n# b\n`;
    const m = merged(existing, [web1(K1, ["3.250.17.99", "10.42.1.11"])]);
    expect(m.text).toBe(`# a\n3.250.17.99,10.42.1.11 ${K1} nixship:web1\n# b\n`);
    expect(m.hosts[0]?.change).toBe("updated");
  });

  it("refuses another key for one of the host's names, or on nixship's line for it, naming the line and both fingerprints", () => {
    const found = conflicts(`# x\ngit.example.org,10.42.1.11 ${K2}\n`, [web1()]);
    expect(found).toEqual([
      {
        host: "web1",
        where: "known_hosts line 2 (10.42.1.11)",
        oldFingerprint: keyFingerprint(K2),
        newFingerprint: keyFingerprint(K1),
        source: "Terraform's output ssh_host_public_key",
      },
    ]);
    expect(conflicts(`${hashed("3.250.17.21")} ${K2}\n`, [web1()])[0]?.where).toBe(
      "known_hosts line 1 (3.250.17.21)",
    );
    // The host's old address, on the line nixship wrote for it.
    expect(conflicts(`9.9.9.9 ${K2} nixship:web1\n`, [web1()])[0]?.where).toBe(
      "known_hosts line 1 (nixship:web1)",
    );
    const error = new HostKeyChangedError(found, "--replace-host-keys");
    expect(error.exitCode).toBe(1);
    expect(error.message).toBe(
      `web1: its SSH host key changed: known_hosts line 2 (10.42.1.11) trusts ${keyFingerprint(K2)}, Terraform's output ssh_host_public_key gives ${keyFingerprint(K1)}`,
    );
    expect(error.hint).toContain("run again with --replace-host-keys");
  });

  it("with replaceChanged, takes the new key: the host's names leave other lines, which keep their other names", () => {
    const existing = [
      `git.example.org,10.42.1.11 ${K2} me`,
      `${hashed("3.250.17.21")} ${K2}`,
      `10.42.1.11 ${RSA}`,
      `192.0.2.7 ${OTHER}`,
    ].join("\n");
    const m = merged(existing, [web1()], true);
    expect(m.text).toBe(
      [
        `git.example.org ${K2} me`,
        `3.250.17.21,10.42.1.11 ${K1} nixship:web1`,
        `10.42.1.11 ${RSA}`,
        `192.0.2.7 ${OTHER}`,
        "",
      ].join("\n"),
    );
    expect(m.hosts[0]?.change).toBe("replaced");
  });

  it("merges several hosts, each on its own", () => {
    const web2: HostKeyEntry = {
      host: "web2",
      names: ["10.42.1.12"],
      key: K2,
      source: "the store",
    };
    const m = merged(`10.42.1.12 ${K2}\n`, [web1(), web2]);
    expect(m.hosts.map((h) => [h.host, h.change])).toEqual([
      ["web1", "added"],
      ["web2", "unchanged"],
    ]);
    expect(m.text).toBe(`10.42.1.12 ${K2}\n3.250.17.21,10.42.1.11 ${K1} nixship:web1\n`);
  });
});

describe("keyFingerprint", () => {
  it("is ssh-keygen's SHA256 form", () => {
    expect(keyFingerprint(K1)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(keyFingerprint(K1)).not.toBe(keyFingerprint(K2));
  });
});

describe("two hosts of one output with the same address", () => {
  it("are a conflict: ssh could not tell them apart", () => {
    const web2: HostKeyEntry = {
      host: "web2",
      names: ["10.42.1.11"],
      key: K2,
      source: "the store",
    };
    const found = conflicts("", [web1(), web2]);
    expect(found.map((c) => [c.host, c.where])).toEqual([
      ["web2", "the line for web1 (10.42.1.11)"],
    ]);
  });
});

describe("HostKeyChangedError", () => {
  it("names 20 changed keys one by one, then how many more (a fleet-wide replace)", () => {
    const conflicts = Array.from({ length: 25 }, (_, i) => ({
      host: `web${i + 1}`,
      where: `known_hosts line ${i + 1} (10.0.0.${i + 1})`,
      oldFingerprint: "SHA256:old",
      newFingerprint: "SHA256:new",
      source: "Terraform's output ssh_host_public_key",
    }));
    const lines = new HostKeyChangedError(conflicts, "--replace-host-keys").message.split("\n");
    expect(lines).toHaveLength(21);
    expect(lines[0]).toBe(
      "web1: its SSH host key changed: known_hosts line 1 (10.0.0.1) trusts SHA256:old, Terraform's output ssh_host_public_key gives SHA256:new",
    );
    expect(lines[20]).toBe("… and 5 more (25 hosts in all whose SSH host key changed)");
  });
});
