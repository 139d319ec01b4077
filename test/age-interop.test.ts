// nixship's age layer against the age 1.1.1 CLI and ssh-keygen: each side decrypts what the
// other wrote, to ssh-ed25519 host keys and X25519 recipients, and neither opens another's file.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decryptSecret,
  encryptSecret,
  parseIdentities,
  parseRecipient,
  readAgeHeader,
} from "../src/age/age.js";
import { NixshipError } from "../src/errors.js";

interface Keys {
  /** Paths of the ssh private key and the age identity file. */
  readonly sshKeyFile: string;
  readonly ageKeyFile: string;
  readonly sshPublicLine: string;
  readonly ageRecipient: string;
}

let dir: string;
let mine: Keys;
let theirs: Keys;

function makeKeys(name: string): Keys {
  const sshKeyFile = join(dir, `${name}_ed25519`);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", sshKeyFile]);
  const ageKeyFile = join(dir, `${name}.agekey`);
  execFileSync("age-keygen", ["-o", ageKeyFile], { stdio: "ignore" });
  return {
    sshKeyFile,
    ageKeyFile,
    sshPublicLine: readFileSync(`${sshKeyFile}.pub`, "utf8").trim(),
    ageRecipient: execFileSync("age-keygen", ["-y", ageKeyFile], { encoding: "utf8" }).trim(),
  };
}

/** Runs the age CLI; returns its exit status and output rather than throwing. */
function age(args: string[], input?: Uint8Array): { status: number | null; stdout: Buffer } {
  const r = spawnSync("age", args, { input });
  return { status: r.status, stdout: r.stdout };
}

function identitiesOf(keys: Keys): { ssh: string; x25519: string } {
  return {
    ssh: readFileSync(keys.sshKeyFile, "utf8"),
    x25519: readFileSync(keys.ageKeyFile, "utf8"),
  };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nixship-age-interop-"));
  mine = makeKeys("mine");
  theirs = makeKeys("theirs");
});

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

// Binary, not UTF-8, and longer than one 64 KiB payload chunk.
const PLAINTEXT = new Uint8Array(randomBytes(70_000));

describe("age interop with the age 1.1.1 CLI", () => {
  it("the CLI decrypts what nixship writes, with the ssh key and with the age identity", async () => {
    const file = await encryptSecret(PLAINTEXT, [
      parseRecipient(mine.sshPublicLine, "host"),
      parseRecipient(mine.ageRecipient, "admin"),
    ]);
    // The file carries nixship's own stanza, which the CLI must skip.
    expect((await readAgeHeader(file, "nixship file")).recipientsDigest).toMatch(/^[0-9a-f]{64}$/);
    for (const keyFile of [mine.sshKeyFile, mine.ageKeyFile]) {
      const out = age(["-d", "-i", keyFile], file);
      expect(out.status).toBe(0);
      expect(new Uint8Array(out.stdout)).toEqual(PLAINTEXT);
    }
    for (const [recipient, keyFile] of [
      [mine.sshPublicLine, mine.sshKeyFile],
      [mine.ageRecipient, mine.ageKeyFile],
    ] as const) {
      const single = await encryptSecret(PLAINTEXT, [parseRecipient(recipient, "one")]);
      expect(new Uint8Array(age(["-d", "-i", keyFile], single).stdout)).toEqual(PLAINTEXT);
    }
  });

  it("nixship decrypts what the CLI writes with -R, -r and -a", async () => {
    const recipientsFile = join(dir, "recipients.txt");
    writeFileSync(recipientsFile, `# host\n${mine.sshPublicLine}\n# admin\n${mine.ageRecipient}\n`);
    const written = {
      recipientsFile: age(["-R", recipientsFile], PLAINTEXT),
      sshOnly: age(["-R", `${mine.sshKeyFile}.pub`], PLAINTEXT),
      dashR: age(["-r", mine.ageRecipient], PLAINTEXT),
      sshDashR: age(["-r", mine.sshPublicLine], PLAINTEXT),
      armored: age(["-a", "-R", recipientsFile], PLAINTEXT),
    };
    const ids = identitiesOf(mine);
    const sshIds = parseIdentities(ids.ssh, mine.sshKeyFile);
    const ageIds = parseIdentities(ids.x25519, mine.ageKeyFile);
    for (const [name, out] of Object.entries(written)) {
      expect(out.status, name).toBe(0);
      const file = new Uint8Array(out.stdout);
      const needsAge = name === "dashR";
      const needsSsh = name === "sshOnly" || name === "sshDashR";
      if (!needsAge) expect(await decryptSecret(file, sshIds, name), name).toEqual(PLAINTEXT);
      if (!needsSsh) expect(await decryptSecret(file, ageIds, name), name).toEqual(PLAINTEXT);
    }
    expect(Buffer.from(written.armored.stdout).toString().startsWith("-----BEGIN AGE")).toBe(true);
    const header = await readAgeHeader(new Uint8Array(written.recipientsFile.stdout), "cli file");
    expect(header.recipientsDigest).toBeUndefined();
    expect(header.sshTags).toEqual([parseRecipient(mine.sshPublicLine, "host").sshTag]);
    expect(header.x25519Count).toBe(1);
  });

  it("a file for other keys fails in both directions", async () => {
    const ours = await encryptSecret(PLAINTEXT, [
      parseRecipient(theirs.sshPublicLine, "their host"),
      parseRecipient(theirs.ageRecipient, "their admin"),
    ]);
    for (const keyFile of [mine.sshKeyFile, mine.ageKeyFile]) {
      const out = age(["-d", "-i", keyFile], ours);
      expect(out.status).not.toBe(0);
      expect(out.stdout.length).toBe(0);
    }
    const recipientsFile = join(dir, "their-recipients.txt");
    writeFileSync(recipientsFile, `${theirs.sshPublicLine}\n${theirs.ageRecipient}\n`);
    const cli = age(["-R", recipientsFile], PLAINTEXT);
    expect(cli.status).toBe(0);
    const ids = identitiesOf(mine);
    for (const text of [ids.ssh, ids.x25519]) {
      let code: string | undefined;
      try {
        await decryptSecret(
          new Uint8Array(cli.stdout),
          parseIdentities(text, "mine"),
          "theirs.age",
        );
      } catch (err) {
        code = err instanceof NixshipError ? err.code : String(err);
      }
      expect(code).toBe("secret-not-for-identity");
    }
  });
});
