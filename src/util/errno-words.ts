// What a failed file operation means, in words a user reads, and whether it is the path's fault
// (bad input: exit 2) or the machine's (a full disk, an I/O error: the operation failed).

const WORDS: Readonly<Record<string, string>> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "a part of its path is not a directory",
  EISDIR: "it is a directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "the file system is read-only",
  ENOSPC: "no space left on the device",
  EDQUOT: "the disk quota is used up",
  EEXIST: "it exists already",
  ENOTFILE: "it is not a regular file",
  ELOOP: "too many levels of symbolic links",
  ENAMETOOLONG: "the name is too long",
  EIO: "an input/output error",
};

/** The errno codes that say the path given is wrong, not that the machine failed. */
const PATH_FAULTS = new Set([
  "ENOENT",
  "ENOTDIR",
  "EISDIR",
  "EACCES",
  "EPERM",
  "EROFS",
  "ENOTFILE",
  "ELOOP",
  "ENAMETOOLONG",
]);

function codeOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === "string" ? code : undefined;
}

/** `err` in words ("no such file or directory (ENOENT)"), or its message when it has no code. */
export function errnoWords(err: unknown): string {
  const code = codeOf(err);
  if (code === undefined) return err instanceof Error ? err.message : String(err);
  const words = WORDS[code];
  return words === undefined ? code : `${words} (${code})`;
}

/** Whether `err` says the path is wrong (missing, a directory, not allowed): bad input. */
export function isPathFault(err: unknown): boolean {
  const code = codeOf(err);
  return code !== undefined && PATH_FAULTS.has(code);
}
