import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeHostKey } from "../../test/support/ssh-host-key.js";
import {
  type HostSigningKey,
  judgeReport,
  loadHostSigningKey,
  type ReportPlace,
  signedReportBytes,
} from "./report-signature.js";
import type { StatusRecord } from "./status.js";

let dir: string;
let key: HostSigningKey;
let publicKey: string;
let otherPublicKey: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-report-signature-"));
  const web1 = await makeHostKey(dir, "web1");
  key = await loadHostSigningKey(web1.file);
  publicKey = web1.publicKey;
  otherPublicKey = (await makeHostKey(dir, "web2")).publicKey;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const path = `/nix/store/${"a".repeat(32)}-nixos-system-web1`;
const record: StatusRecord = {
  version: 1,
  host: "web1",
  mode: "agent",
  channel: "prod",
  seq: 4,
  desired: path,
  current: path,
  generation: 3,
  state: "success",
  phase: null,
  error: null,
  rolledBack: null,
  startedAt: "2026-11-29T07:00:00.000Z",
  updatedAt: "2026-11-29T07:00:01.000Z",
};
const place: ReportPlace = { host: "web1", channel: "prod", seq: 4, state: "success" };

describe("an agent's signed report", () => {
  it("is one JSON object ending with its signature, and reads as the record", () => {
    const bytes = signedReportBytes(record, key);
    const parsed = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
    expect(Object.keys(parsed).at(-1)).toBe("signature");
    expect(parsed.signature).toMatch(/^ssh-ed25519:[A-Za-z0-9+/]{86}==$/);
    expect(judgeReport(bytes, "r", publicKey, place)).toEqual({ trusted: true, record });
  });

  it("is not believed unsigned, edited, signed by another host's key, or copied to another place", () => {
    const signed = Buffer.from(signedReportBytes(record, key)).toString("utf8");
    const why = (bytes: Uint8Array, hostKey = publicKey, at = place) => {
      const judged = judgeReport(bytes, "r", hostKey, at);
      return judged.trusted ? "trusted" : judged.why;
    };
    expect(why(signedReportBytes(record, undefined))).toBe("it is not signed");
    expect(why(Buffer.from(signed.replace('"generation":3', '"generation":4')))).toBe(
      "it is not signed by web1's host key (or was edited since)",
    );
    expect(why(Buffer.from(signed), otherPublicKey)).toBe(
      "it is not signed by web1's host key (or was edited since)",
    );
    expect(
      why(
        Buffer.from(
          signed.replace(/"signature":"ssh-ed25519:[^"]+"/, '"signature":"ssh-ed25519:AAAA"'),
        ),
      ),
    ).toBe("its signature is malformed");
    // The host's own report of release 4, copied under release 5's marker, or as a failure.
    expect(why(Buffer.from(signed), publicKey, { ...place, seq: 5 })).toBe(
      "it is web1's report of success on release 4 of prod, copied here",
    );
    expect(why(Buffer.from(signed), publicKey, { ...place, state: "failed" })).toMatch(
      /copied here$/,
    );
  });

  it("a key file that is not an unencrypted ed25519 key is named, never shown", async () => {
    const bad = join(dir, "bad");
    await writeFile(
      bad,
      "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretbytes!\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    await chmod(bad, 0o600);
    const err = (await loadHostSigningKey(bad).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe(`${bad} has an OpenSSH private key that is not base64`);
    await expect(loadHostSigningKey(join(dir, "missing"))).rejects.toThrow(
      /missing: no such file$/,
    );
  });

  it("a key file others may read signs nothing: its mode is named, and the fix", async () => {
    const exposed = await makeHostKey(dir, "web3");
    await chmod(exposed.file, 0o644);
    const err = (await loadHostSigningKey(exposed.file).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe(
      `${exposed.file} may be read by others (mode 0644), so it signs nothing (chmod 600 ${exposed.file}, as sshd requires of a host key)`,
    );
    await chmod(exposed.file, 0o600);
    await expect(loadHostSigningKey(exposed.file)).resolves.toBeDefined();
  });
});
