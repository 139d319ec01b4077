// An SSH host key as the fleet keeps it: `ssh-ed25519 BASE64`, checked and without its comment.
import { InputError } from "../errors.js";
import { parseRecipient } from "./age.js";

/** `ssh-ed25519 BASE64` from a public key line (`ssh-ed25519 BASE64 comment`); throws InputError. */
export function canonicalHostKey(text: string, where: string): string {
  const recipient = parseRecipient(text.trim(), where);
  if (recipient.kind !== "ssh-ed25519") {
    throw new InputError("bad-host-key", `${where}: not an ssh-ed25519 host key`);
  }
  return recipient.text;
}
