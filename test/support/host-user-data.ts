// The host module's user-data as terraform/modules/host/main.tf puts it together (local.user_data),
// for the tests that render its parts with tftpl.ts: the parts joined, and a script over EC2's
// 16 KiB without its comment lines. terraform-host-user-data.test.ts checks that main.tf's
// expression is the one this mirrors.
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const HOST_MODULE_DIR = join(
  fileURLToPath(new URL("../..", import.meta.url)),
  "terraform",
  "modules",
  "host",
);

/** EC2 refuses user-data over 16 KiB. */
export const USER_DATA_LIMIT = 16 * 1024;

/** main.tf's pattern for replace(): a line that holds nothing but a comment ("#!" stays). */
export const COMMENT_LINE_HCL = "/(?m)^[ \\t]*#( .*)?\\n/";

/** What Terraform's replace(text, COMMENT_LINE_HCL, "") makes of `text`. */
export function withoutCommentLines(text: string): string {
  return text.replace(/^[ \t]*#( .*)?\n/gm, "");
}

/**
 * local.user_data for these rendered parts (the SSH part, the fetch, the bootstrap; those the
 * host has): joined, kept byte for byte within 16 KiB of bytes (main.tf reads them from the
 * text's base64: length() counts characters), else without its comment lines.
 */
export function userDataOf(parts: readonly string[]): string {
  const script = parts.join("");
  return Buffer.byteLength(script) <= USER_DATA_LIMIT ? script : withoutCommentLines(script);
}

/** The bytes of `text` as main.tf reads them: from its base64, 3 for each 4 characters less its "=" padding. */
export function base64Bytes(text: string): number {
  const b64 = Buffer.from(text, "utf8").toString("base64");
  return (b64.length / 4) * 3 - (b64.endsWith("==") ? 2 : b64.endsWith("=") ? 1 : 0);
}
