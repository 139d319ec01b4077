// `secrets set --from VALUE` never shows a VALUE that may be the secret itself (`--from
// "$DB_PASSWORD"`), and the secrets commands refuse a secret whose file is the fleet file, the
// host-key pins file or another secret's, as the files resolve, before anything is written.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NixshipError } from "../errors.js";
import type { CliIO } from "./command.js";
import { secretsList, secretsSet } from "./secrets.js";

const ADMIN = "age13lla8hn7p8ua5ud9858j0rcgxdj2kppja6nezzv9v03e000qx42sp7nezk";
const SYSTEM = "/nix/store/vxjiwkjkn7x4079qvh1jkl5pn05j2aw0-nixos-system-web";

let dir: string;

function writeFleet(file: string, entries: Record<string, Record<string, unknown>>): string {
  const doc = {
    hosts: { web1: { address: "10.0.0.1", system: SYSTEM } },
    secrets: { admins: [ADMIN], entries },
  };
  const text = JSON.stringify(doc, null, 2);
  writeFileSync(file, text);
  return text;
}

function io(input = ""): CliIO & { out: PassThrough; err: PassThrough } {
  const out = new PassThrough();
  const err = new PassThrough();
  return { stdout: out, stderr: err, stdin: Readable.from([input]), env: {}, out, err };
}

/** The error `run` throws, as a user sees it: its message and hint (also --json's). */
async function failure(run: Promise<number>): Promise<{ code: string; text: string }> {
  const err = await run.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NixshipError);
  const e = err as NixshipError;
  return { code: e.code, text: `${e.message}\n${e.hint ?? ""}\n${JSON.stringify(e)}` };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "nixship-secrets-from-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("secrets set --from VALUE", () => {
  it("never shows a value that names no file and may be the secret itself", async () => {
    const fleet = join(dir, "from.json");
    writeFleet(fleet, { db: { hosts: "web1" } });
    const secrets = [
      "hunter2",
      "Tr0ub4dor&3",
      "correct horse battery staple",
      "s3cret-db-password-7f1e9c",
      "pa/ss:word",
      "line one\nline two",
      "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
      "dGhpc0lzQVRva2VuT2YzMkNoYXJhY3RlcnNPck1vcmU",
      "x".repeat(5000),
    ];
    for (const secret of secrets) {
      const f = await failure(secretsSet.run(["db", "--from", secret, "--fleet", fleet], io()));
      expect(f.code, secret).toBe("secret-source-unreadable");
      expect(f.text, secret).not.toContain(secret);
      expect(f.text).toContain(`${secret.length} characters, not shown`);
      expect(f.text).toContain("never the secret itself");
    }
  });

  it("never shows one that names a file but looks like a secret (an empty one, say)", async () => {
    const fleet = join(dir, "from-empty.json");
    writeFleet(fleet, { db: { hosts: "web1" } });
    const token = "dGhpc0lzQVRva2VuT2YzMkNoYXJhY3RlcnNPck1vcmU";
    writeFileSync(join(dir, token), "");
    const f = await failure(
      secretsSet.run(["db", "--from", join(dir, token), "--fleet", fleet], io()),
    );
    expect(f.code).toBe("secret-empty");
    expect(f.text).not.toContain(token);
  });

  it("still names a path, there or not, and an empty file", async () => {
    const fleet = join(dir, "from-path.json");
    writeFleet(fleet, { db: { hosts: "web1" } });
    const missing = join(dir, "nope.txt");
    const gone = await failure(secretsSet.run(["db", "--from", missing, "--fleet", fleet], io()));
    expect(gone.text).toContain(`cannot read ${missing}: no such file`);
    const blank = join(dir, "blank.txt");
    writeFileSync(blank, "");
    const empty = await failure(secretsSet.run(["db", "--from", blank, "--fleet", fleet], io()));
    expect(empty.text).toContain(`secrets set db: ${blank} gave no bytes`);
  });
});

describe("a secret's file that is another file of the fleet", () => {
  /** Runs `set` and `list` on the fleet, expecting both refused with nothing written. */
  async function refused(fleet: string, text: string, expected: RegExp): Promise<void> {
    for (const run of [
      () => secretsSet.run(["a", "--fleet", fleet], io("s3cret-value")),
      () => secretsList.run(["--fleet", fleet], io()),
    ]) {
      const f = await failure(run());
      expect(f.code).toBe("secret-file-taken");
      expect(f.text).toMatch(expected);
      expect(f.text).not.toContain("s3cret-value");
      expect(readFileSync(fleet, "utf8")).toBe(text);
    }
  }

  it("refuses the fleet file, whatever its name, and the pins file, however named", async () => {
    const fleet = join(dir, "prod.json");
    const text = writeFleet(fleet, { a: { hosts: "web1", file: "prod.json" } });
    await refused(fleet, text, /secret "a": its file .*prod\.json is the fleet file/);
    const pinned = writeFleet(fleet, {
      a: { hosts: "web1", file: join(dir, "nixship-host-keys") },
    });
    await refused(fleet, pinned, /is the host-key pins file \(nixship-host-keys\)/);
  });

  it("refuses one file for two secrets, as an absolute path or through a link", async () => {
    const fleet = join(dir, "twins.json");
    const text = writeFleet(fleet, {
      a: { hosts: "web1", file: "secrets/a.age" },
      b: { hosts: "web1", file: join(dir, "secrets", "a.age") },
    });
    await refused(fleet, text, /secret "b": its file .* is the file of secret "a"/);
    mkdirSync(join(dir, "linked"));
    symlinkSync(dir, join(dir, "linked", "up"));
    const linked = writeFleet(fleet, {
      a: { hosts: "web1", file: "linked/up/twins.json" },
    });
    await refused(fleet, linked, /secret "a": its file .* is the fleet file/);
  });
});
