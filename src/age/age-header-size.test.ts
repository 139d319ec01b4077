// encryptSecret never makes a file whose header is past the 64 KiB nixship reads back: with too
// many recipients it refuses, naming their number, the limit and the fix, and returns nothing.
import { randomBytes } from "node:crypto";
import { ed25519, x25519 } from "@noble/curves/ed25519.js";
import { describe, expect, it } from "vitest";
import { InputError } from "../errors.js";
import { type AgeRecipient, encryptSecret, parseRecipient, readAgeHeader } from "./age.js";
import { bech32Encode } from "./bech32.js";

/** `n` distinct ssh-ed25519 host keys, as the fleet names them. */
function sshRecipients(n: number): AgeRecipient[] {
  return Array.from({ length: n }, (_, i) => {
    const key = ed25519.getPublicKey(randomBytes(32));
    const type = Buffer.from("ssh-ed25519");
    const wire = Buffer.alloc(4 + type.length + 4 + key.length);
    wire.writeUInt32BE(type.length, 0);
    type.copy(wire, 4);
    wire.writeUInt32BE(key.length, 4 + type.length);
    Buffer.from(key).copy(wire, 8 + type.length);
    return parseRecipient(`ssh-ed25519 ${wire.toString("base64")}`, `host ${i}`);
  });
}

/** `n` distinct age1 recipients. */
function x25519Recipients(n: number): AgeRecipient[] {
  return Array.from({ length: n }, (_, i) =>
    parseRecipient(bech32Encode("age", x25519.getPublicKey(randomBytes(32))), `admin ${i}`),
  );
}

const PLAINTEXT = new TextEncoder().encode("s3cret-db-password-7f1e9c");

async function refusal(recipients: readonly AgeRecipient[]): Promise<InputError | undefined> {
  return encryptSecret(PLAINTEXT, recipients).then(
    () => undefined,
    (err: unknown) => {
      expect(err).toBeInstanceOf(InputError);
      return err as InputError;
    },
  );
}

describe("encryptSecret's header size", () => {
  it("refuses 600 ssh-ed25519 recipients (over 64 KiB of header), naming them, the limit and the fix", async () => {
    const err = await refusal(sshRecipients(600));
    expect(err?.code).toBe("too-many-recipients");
    expect(err?.message).toMatch(
      /^a secret for 600 recipients would have an age header of \d+ bytes, more than the 65536 bytes \(64 KiB\)/,
    );
    expect(err?.message).toContain("(at most 593 ssh-ed25519 or 666 age1 recipients)");
    expect(err?.message).toContain("nothing was written");
    expect(err?.hint).toMatch(/fewer hosts/);
    expect(err?.hint).toMatch(/one per tag/);
    expect(`${err?.message} ${err?.hint}`).not.toContain("s3cret");
  });

  it("refuses 700 age1 recipients too", async () => {
    const err = await refusal(x25519Recipients(700));
    expect(err?.code).toBe("too-many-recipients");
    expect(err?.message).toMatch(/^a secret for 700 recipients/);
  });

  it("takes 594 ssh-ed25519 recipients, a header just within 64 KiB that reads back, and refuses 595", async () => {
    // Each such stanza is 110 bytes; with the version, digest and MAC lines, 594 make 65498.
    const keys = sshRecipients(595);
    const file = await encryptSecret(PLAINTEXT, keys.slice(0, 594));
    expect((await readAgeHeader(file, "594 recipients")).sshTags).toHaveLength(594);
    expect((await refusal(keys))?.message).toMatch(
      /^a secret for 595 recipients would have an age header of 65608 bytes/,
    );
  });
});
