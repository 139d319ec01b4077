// Files that commands write for other tools (Terraform var files, fleet files): replaced
// atomically, so a reader never sees half a file; and input files where `-` means stdin.
import { randomBytes } from "node:crypto";
import { open, readFile, rename, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { text } from "node:stream/consumers";
import { InputError, OperationError } from "../errors.js";

/** Writes `content` to a temporary file beside `file`, flushes it, then renames it into place. */
export async function writeFileAtomically(file: string, content: string): Promise<void> {
  const target = resolve(file);
  const tmp = join(dirname(target), `.${basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const handle = await open(tmp, "wx", 0o644);
    try {
      await handle.writeFile(content, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, target);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw new OperationError(
      "output-unwritable",
      `cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { cause: err },
    );
  }
}

/** The text of `file`, or of stdin when `file` is `-`; `what` names it in the error. */
export async function readInputText(
  file: string,
  stdin: NodeJS.ReadableStream,
  what: string,
): Promise<string> {
  if (file === "-") return text(stdin);
  return readFile(file, "utf8").catch((err: NodeJS.ErrnoException) => {
    throw new InputError(
      "input-unreadable",
      `cannot read ${what} ${file}: ${err.code === "ENOENT" ? "no such file" : (err.code ?? err.message)}`,
      { cause: err },
    );
  });
}
