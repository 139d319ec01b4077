// A new ssh-ed25519 public key line, as `ssh-keygen -y` writes it (without a comment): for
// tests and benches that need a host key a real parser takes.
import { generateKeyPairSync } from "node:crypto";

export function ed25519PublicKeyLine(): string {
  const der = generateKeyPairSync("ed25519").publicKey.export({ type: "spki", format: "der" });
  const raw = der.subarray(der.length - 32);
  const type = Buffer.from("ssh-ed25519");
  // The blob: the type and the 32 key bytes, each length-prefixed.
  const blob = Buffer.alloc(4 + type.length + 4 + raw.length);
  blob.writeUInt32BE(type.length, 0);
  type.copy(blob, 4);
  blob.writeUInt32BE(raw.length, 4 + type.length);
  raw.copy(blob, 8 + type.length);
  return `ssh-ed25519 ${blob.toString("base64")}`;
}
