// Files that commands write for other tools (Terraform var files, fleet files): replaced
// atomically, so a reader never sees half a file; and input files where `-` means stdin.
import { constants } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { text } from "node:stream/consumers";
import { InputError, OperationError } from "../errors.js";
import { writeFileAtomically } from "../util/atomic-file.js";

/** Writes `content` to `file` atomically; a failure is an OperationError naming the file. */
export async function writeOutputFile(file: string, content: string): Promise<void> {
  try {
    await writeFileAtomically(file, content);
  } catch (err) {
    throw new OperationError(
      "output-unwritable",
      `cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { cause: err },
    );
  }
}

/**
 * Fails as writeOutputFile would, before anything else is written, when `file` cannot be
 * written now: its directory is missing or not writable, or it is a directory. A command with
 * two outputs asks this of the second before it writes the first.
 */
export async function checkOutputFile(file: string): Promise<void> {
  const target = resolve(file);
  try {
    await access(dirname(target), constants.W_OK);
    const existing = await stat(target).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (existing?.isDirectory()) throw Object.assign(new Error("EISDIR"), { code: "EISDIR" });
  } catch (err) {
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
