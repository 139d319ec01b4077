// Secret files named on the command line: never echoed, never accepted when others may read
// them, and a key given where its file belongs is refused without being shown.
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError, NixshipError } from "../errors.js";
import { formatSecretKey, generateSecretKey } from "../nix/keys.js";
import {
  readSecretFile,
  readSecretKeyFile,
  readTrustedKeys,
  releaseKeySource,
  tokenFileNamer,
} from "./keys-input.js";

let dir: string;
const secret = formatSecretKey(generateSecretKey("adv-1"));
const body = secret.slice("adv-1:".length);

/** Every 6-character run of the key's base64: none may appear in what the user sees. */
function leaks(text: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 6 <= body.length; i++) {
    if (text.includes(body.slice(i, i + 6))) found.push(body.slice(i, i + 6));
  }
  return found;
}

async function failure(p: Promise<unknown>): Promise<NixshipError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof NixshipError))
    throw new Error(`expected a NixshipError, got ${String(err)}`);
  expect(leaks(`${err.message}\n${err.hint ?? ""}`)).toEqual([]);
  return err;
}

async function keyFile(name: string, text: string, mode: number): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, text);
  await chmod(file, mode);
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-keys-input-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("readSecretKeyFile", () => {
  it("reads a key file only its owner may read", async () => {
    const key = await readSecretKeyFile(await keyFile("ok.sec", secret, 0o600));
    expect(key.name).toBe("adv-1");
  });

  it("refuses a key file others may read, with the chmod hint", async () => {
    for (const mode of [0o644, 0o640, 0o604]) {
      const file = await keyFile(`open-${mode.toString(8)}.sec`, secret, mode);
      const err = await failure(readSecretKeyFile(file));
      expect(err.code).toBe("key-exposed");
      expect(err.message).toBe(
        `secret key file ${file} may be read by others (mode 0${mode.toString(8)})`,
      );
      expect(err.hint).toBe(`chmod 600 ${file}`);
    }
  });

  it("refuses the key itself given where its file belongs, without showing it", async () => {
    for (const given of [secret, `${secret}\n`, ` ${secret}`]) {
      const err = await failure(readSecretKeyFile(given));
      expect(err.message).toBe(
        "secret key file: expected the path of a file holding the secret; what was given looks like the secret itself (not shown)",
      );
      expect(err.exitCode).toBe(2);
    }
  });

  it("names a missing file by its flag, with the command that makes one, and shows no part of a key without its NAME:", async () => {
    const nope = join(dir, "nope.sec");
    const missing = await failure(readSecretKeyFile(nope));
    expect(missing).toMatchObject({ code: "key-missing", exitCode: 2 });
    expect(missing.message).toBe(`--key ${nope}: no such file`);
    expect(missing.hint).toBe(
      `make one with 'nixship key generate --name NAME --out ${nope}' (mode 0600); the public key it prints goes in the fleet file's cache.publicKeys`,
    );
    for (const flag of ["--release-key", "$NIXSHIP_RELEASE_KEY"]) {
      const release = await failure(readSecretKeyFile(nope, flag));
      expect(release.message).toBe(`${flag} ${nope}: no such file`);
      expect(release.hint).toContain("releases.publicKeys");
    }
    // The secret half of a key without its NAME:, or a token, given where a file belongs (and
    // so resolved against a directory): neither is shown.
    for (const given of [
      "TXawlJLC/wtzVvxZAqVf1XTtvPJD7kNLehvmxmR19lhDhekWiakG2RgzZFzgz+rWud5ha8d+d/8I4HS2DbNM5Q==",
      "0123456789abcdef0123456789abcdef",
      join(dir, "X1CANARYpromtokenvalue0123456789"),
    ]) {
      const secret = await failure(readSecretKeyFile(given));
      expect(secret).toMatchObject({ code: "key-missing", exitCode: 2 });
      expect(secret.message).toBe(
        `--key: no such file, and what was given (${given.length} characters, not shown) looks like a secret rather than a file's path`,
      );
      expect(`${secret.message} ${secret.hint}`).not.toContain(given.slice(-20));
    }
    // A path of words and dates, or of a digest (as /run/secrets names files), is shown as it is.
    for (const name of [
      "cache-key-20261130",
      "0123456789abcdef0123456789abcdef",
      "MyServiceApiToken2024",
    ]) {
      const path = join(dir, name);
      expect((await failure(readSecretKeyFile(path))).message).toBe(`--key ${path}: no such file`);
    }
    const nameless = await keyFile("nameless.sec", body, 0o600);
    const err = await failure(readSecretKeyFile(nameless));
    expect(err.message).toBe(
      `${nameless}: secret key must look like 'NAME:BASE64' (its text is not shown)`,
    );
  });

  it("refuses a file larger than any secret before reading it", async () => {
    const big = await keyFile("big.sec", "x".repeat(70_000), 0o600);
    const err = await failure(readSecretKeyFile(big));
    expect(err.message).toMatch(/holds 70000 bytes, more than any secret/);
  });
});

describe("readSecretFile (tokens)", () => {
  it("reads a private token file and refuses one others may read", async () => {
    expect(await readSecretFile(await keyFile("token", "t0ken\n", 0o600), "--token-file")).toBe(
      "t0ken\n",
    );
    const open = await keyFile("token-open", "t0ken\n", 0o644);
    const err = await failure(readSecretFile(open, "--token-file"));
    expect(err.message).toBe(`--token-file ${open} may be read by others (mode 0644)`);
  });

  it("refuses a token file in the Nix store, saying it is exposed and how to give it", async () => {
    // What Nix makes of `bearerTokenFile = ./prom.token`: a copy in the store, mode 0444.
    const local = await keyFile("prom.token", `t0ken-${process.pid}-${Date.now()}\n`, 0o600);
    const inStore = execFileSync("nix-store", ["--add", local], { encoding: "utf8" }).trim();
    expect(inStore).toMatch(/^\/nix\/store\/[0-9a-z]{32}-prom\.token$/);
    const err = await failure(readSecretFile(inStore, "prometheus.bearerTokenFile"));
    expect(err.code).toBe("key-in-store");
    expect(err.message).toBe(
      `prometheus.bearerTokenFile ${inStore} is in the Nix store, where every user of the machine may read it`,
    );
    expect(err.hint).toContain(
      "make a new one (the one there is exposed), keep it outside the flake",
    );
  });

  it("names a missing token file by its flag, with how to make one", async () => {
    const nope = join(dir, "no-token");
    const err = await failure(readSecretFile(nope, "--token-file", tokenFileNamer(nope)));
    expect(err.message).toBe(`--token-file ${nope}: no such file`);
    expect(err.hint).toContain(`> ${nope})`);
  });
});

describe("readTrustedKeys and releaseKeySource", () => {
  it("names a --trusted-key file that is not there, with what it takes", async () => {
    const nope = join(dir, "trusted.pub");
    const err = await failure(readTrustedKeys([nope]));
    expect(err.message).toBe(`--trusted-key ${nope}: no such file`);
    expect(err.hint).toContain("NAME:BASE64");
  });

  it("never echoes a secret key given where a public key belongs, as the value or in a file", async () => {
    const secret = formatSecretKey(generateSecretKey("cache-1"));
    const bare = secret.slice(secret.indexOf(":") + 1);
    const age = `AGE-SECRET-KEY-1${"Q".repeat(58)}`;
    const nameless = join(dir, "nameless.sec");
    await writeFile(nameless, `${bare}\n`);
    const ageFile = join(dir, "age-identity.txt");
    await writeFile(ageFile, `${age}\n`);
    const messages: string[] = [];
    for (const value of [bare, age, nameless, ageFile]) {
      const err = await failure(readTrustedKeys([value]));
      messages.push(err.message);
    }
    for (const message of messages) {
      expect(message).not.toContain(bare.slice(0, 12));
      expect(message).not.toContain("QQQQ");
    }
    expect(messages[0]).toBe(
      "--trusted-key (88 characters that look like a secret, not shown): no such file",
    );
    expect(messages[1]).toBe(
      "--trusted-key (74 characters that look like a secret, not shown): no such file",
    );
    expect(messages[2]).toContain(
      "public key must look like 'NAME:BASE64' (its text is not shown)",
    );
    expect(messages[3]).toContain("this holds an age identity (its text is not shown)");
  });

  it("refuses a --trusted-key file too large to be one, and one that is not a file, unread", async () => {
    const huge = join(dir, "huge.pub");
    await writeFile(huge, Buffer.alloc(1024 * 1024, 0x61));
    const err = await failure(readTrustedKeys([huge]));
    expect(err.message).toBe(
      `--trusted-key ${huge}: 1048576 bytes or more, where a file of public keys holds at most 65536: not a key file`,
    );
    const device = await failure(readTrustedKeys(["/dev/zero"]));
    expect(device.message).toContain("--trusted-key '/dev/zero' is neither a public key");
  });

  it("refuses a --trusted-key file that holds no key, naming it, rather than trust nothing", async () => {
    for (const [name, text] of [
      ["empty.pub", ""],
      ["blank.pub", " \n\t\n"],
    ]) {
      const file = join(dir, name as string);
      await writeFile(file, text as string);
      const err = await failure(readTrustedKeys([file]));
      expect(err).toBeInstanceOf(InputError);
      expect(err.message).toBe(`--trusted-key ${file}: the file holds no public key`);
      expect(err.hint).toContain("nixship key public SECRET_FILE");
    }
  });

  it("names the release key by the flag or the variable that gave it", () => {
    expect(releaseKeySource("/a.sec", { NIXSHIP_RELEASE_KEY: "/b.sec" })).toEqual({
      file: "/a.sec",
      name: "--release-key",
    });
    expect(releaseKeySource(undefined, { NIXSHIP_RELEASE_KEY: "/b.sec" })).toEqual({
      file: "/b.sec",
      name: "$NIXSHIP_RELEASE_KEY",
    });
    expect(releaseKeySource(undefined, {})).toBeUndefined();
    // Set empty is unset: not a file named "" that does not exist.
    expect(releaseKeySource(undefined, { NIXSHIP_RELEASE_KEY: "" })).toBeUndefined();
  });
});
