// Files that commands write for other tools (Terraform var files, fleet files): replaced
// atomically, so a reader never sees half a file; and input files where `-` means stdin.
import { constants } from "node:fs";
import { access, readlink, realpath, stat } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { InputError, NixshipError, OperationError } from "../errors.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { readFileBounded, readStreamBounded } from "../util/bounded-file.js";
import { errnoWords, isPathFault } from "../util/errno-words.js";
import { withoutControls } from "../util/text.js";

/**
 * Writes `content` to `file` atomically. Where `file` is a symbolic link (a fleet file kept in
 * another checkout, as dotfile managers link files), the file it names is replaced, not the
 * link. A path that cannot take it (its directory missing, a directory, not allowed) is bad
 * input; a machine that fails (a full disk) fails the operation.
 */
export async function writeOutputFile(file: string, content: string): Promise<void> {
  try {
    await writeFileAtomically(await outputTarget(file), content);
  } catch (err) {
    throw unwritable(file, err);
  }
}

/**
 * The file a symbolic link names, else `file` itself (a new file). A link to nothing is refused:
 * what it names may be another output of the same command by the time it is written.
 */
export async function outputTarget(file: string): Promise<string> {
  try {
    return await realpath(file);
  } catch {
    const link = await readlink(file).catch(() => undefined);
    if (link === undefined) return file;
    throw new InputError(
      "output-dangling-link",
      `cannot write ${file}: it is a symbolic link to ${withoutControls(link)}, which does not exist`,
      { hint: "name the file itself, or create the file the link names first" },
    );
  }
}

/** Why `file` could not be written, as the error the command ends with. */
function unwritable(file: string, err: unknown): Error {
  if (err instanceof NixshipError) return err;
  const message = `cannot write ${file}: ${errnoWords(err)}`;
  return isPathFault(err)
    ? new InputError("output-unwritable", message, {
        hint: "name a file in a directory that exists and that you may write",
        cause: err,
      })
    : new OperationError("output-unwritable", message, { cause: err });
}

/**
 * Fails as writeOutputFile would, before anything else is written, when `file` cannot be
 * written now: its directory is missing or not writable, or it is a directory. A command with
 * two outputs asks this of the second before it writes the first.
 */
export async function checkOutputFile(file: string): Promise<void> {
  const target = resolve(await outputTarget(file));
  try {
    await access(dirname(target), constants.W_OK);
    const existing = await stat(target).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    });
    if (existing?.isDirectory()) throw Object.assign(new Error("EISDIR"), { code: "EISDIR" });
  } catch (err) {
    throw unwritable(file, err);
  }
}

/**
 * The text of `file`, or of stdin when `file` is `-`, at most `limit` bytes; `what` names it in
 * the error.
 */
export async function readInputText(
  file: string,
  stdin: NodeJS.ReadableStream,
  what: string,
  limit: number,
): Promise<string> {
  const where = file === "-" ? `${what} on stdin` : `${what} ${file}`;
  const tooLarge = () =>
    new InputError(
      "input-too-large",
      `${where} is more than ${limit / 1024 / 1024} MiB, the most that is read of it: is it the right input?`,
    );
  if (file === "-") return (await readStreamBounded(stdin, limit, tooLarge)).toString("utf8");
  const bytes = await readFileBounded(file, limit, tooLarge).catch((err: NodeJS.ErrnoException) => {
    if (err instanceof InputError) throw err;
    throw new InputError("input-unreadable", `cannot read ${where}: ${errnoWords(err)}`, {
      cause: err,
    });
  });
  if (bytes === undefined) {
    throw new InputError("input-unreadable", `cannot read ${where}: no such file`);
  }
  return bytes.toString("utf8");
}
