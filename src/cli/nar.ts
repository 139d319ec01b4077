// `nixship nar dump|restore|ls`: the NAR codec on the command line, like nix-store --dump/--restore.

import { once } from "node:events";
import { lstat } from "node:fs/promises";
import { InputError, UsageError } from "../errors.js";
import { dumpPathStream } from "../nix/nar-encode.js";
import { listNar, type NarEntry, narListingLines } from "../nix/nar-list.js";
import { restoreNar } from "../nix/nar-restore.js";
import { terminalJson } from "../util/text.js";
import { type Command, parseFlags, refuseArguments } from "./command.js";
import { whileTrapped } from "./interrupts.js";

export const narDump: Command = {
  path: ["nar", "dump"],
  summary: "write the NAR of a path to stdout (as nix-store --dump)",
  help: `Usage: nixship nar dump PATH

Serialises PATH (a file, symlink or directory tree) as a NAR on stdout, byte for byte what
'nix-store --dump PATH' writes.`,
  async run(argv, io) {
    const { positionals } = parseFlags(argv, {}, "nar dump");
    if (positionals.length !== 1) throw new UsageError("nar dump: expects exactly one PATH");
    const path = positionals[0] as string;
    await lstat(path).catch((err: NodeJS.ErrnoException) => {
      const why = err.code === "ENOENT" ? "no such file or directory" : (err.code ?? err.message);
      throw new InputError("nar-dump-path", `nar dump: cannot read ${path}: ${why}`);
    });
    // Written chunk by chunk, not piped: a pipeline that fails destroys stdout with the error,
    // which is then nobody's to handle.
    for await (const chunk of dumpPathStream(path)) {
      if (!io.stdout.write(chunk)) await once(io.stdout, "drain");
    }
    return 0;
  },
};

export const narRestore: Command = {
  path: ["nar", "restore"],
  summary: "restore a NAR from stdin into a new directory (as nix-store --restore)",
  help: `Usage: nixship nar restore DIR < file.nar

Reads a NAR from stdin and recreates its tree at DIR, which must not exist. The NAR is
checked strictly as it streams; on any error nothing is left under DIR and nothing is ever
written outside it.`,
  async run(argv, io) {
    const { positionals } = parseFlags(argv, {}, "nar restore");
    if (positionals.length !== 1) throw new UsageError("nar restore: expects exactly one DIR");
    const dir = positionals[0] as string;
    await whileTrapped("nar restore", (signal) =>
      restoreNar(narFromStdin(io.stdin, NAR_RESTORE), dir, { signal }).catch(emptyNar(NAR_RESTORE)),
    );
    return 0;
  },
};

export const narLs: Command = {
  path: ["nar", "ls"],
  summary: "list the contents of a NAR from stdin",
  help: `Usage: nixship nar ls [--json] < file.nar

Lists every entry of the NAR read from stdin (type, size, path, symlink target), after
checking it strictly.`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, { json: { type: "boolean" } }, "nar ls");
    refuseArguments(positionals, "nar ls");
    const entries = await listNar(narFromStdin(io.stdin, NAR_LS)).catch(emptyNar(NAR_LS));
    await writeInChunks(io.stdout, values.json ? jsonLines(entries) : narListingLines(entries));
    return 0;
  },
};

/**
 * The entries as a JSON array, an entry a line. Each is written from a copy of itself: JSON of
 * the entry as it is would flatten its path (which shares its directory's, unflattened) in
 * place, and so keep every line's whole path for as long as the listing lives.
 */
function* jsonLines(entries: readonly NarEntry[]): Generator<string> {
  yield "[\n";
  for (const [i, e] of entries.entries()) {
    const copy = { ...e, path: `${e.path}/`.slice(0, -1) };
    yield `  ${terminalJson(copy)}${i < entries.length - 1 ? "," : ""}\n`;
  }
  yield "]\n";
}

/**
 * Writes `pieces` a chunk of about 64 KiB at a time, waiting for the reader: what is written
 * is never held whole in one string.
 */
async function writeInChunks(out: NodeJS.WritableStream, pieces: Iterable<string>): Promise<void> {
  let chunk = "";
  for (const piece of pieces) {
    chunk += piece;
    if (chunk.length < 65536) continue;
    if (!out.write(chunk)) await once(out, "drain");
    chunk = "";
  }
  if (chunk !== "") out.write(chunk);
}

/** A command that reads a NAR from stdin: its name, and how to give it one. */
interface NarReader {
  readonly name: string;
  readonly pipe: string;
}
const NAR_LS: NarReader = {
  name: "nar ls",
  pipe: "pipe one in: nixship nar dump PATH | nixship nar ls (or < file.nar)",
};
const NAR_RESTORE: NarReader = {
  name: "nar restore",
  pipe: "pipe one in: nixship nar dump PATH | nixship nar restore DIR (or < file.nar)",
};

/** stdin as a NAR's bytes; a terminal is refused, where it would wait for typing. */
function narFromStdin(stdin: unknown, reader: NarReader): AsyncIterable<Uint8Array> {
  if ((stdin as { isTTY?: boolean }).isTTY === true) {
    throw new UsageError(`${reader.name} reads a NAR from stdin, which is a terminal`, reader.pipe);
  }
  return stdin as AsyncIterable<Uint8Array>;
}

/** A NAR that ended before its first byte is no NAR given: said so. */
function emptyNar(reader: NarReader): (err: unknown) => never {
  return (err) => {
    if (err instanceof InputError && err.message.startsWith("unexpected end of NAR at byte 0")) {
      throw new InputError("bad-nar", `${reader.name}: stdin was empty: no NAR to read`, {
        hint: reader.pipe,
      });
    }
    throw err;
  };
}
