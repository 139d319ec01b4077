// A strict, streaming NAR parser: yields one event per node and file contents in bounded
// chunks, and rejects anything `nix-store --dump` could not have written.
import { EMPTY, NarReader, type NarSource } from "./nar-reader.js";
import { NAR_MAGIC } from "./nar-write.js";

export type { NarSource } from "./nar-reader.js";

export const NAR_MAX_DEPTH = 64;
export const NAR_MAX_NAME = 255;
export const NAR_MAX_TARGET = 4095;
/** Tags are at most "executable" long; anything longer is rejected before it is read. */
const MAX_TAG = 16;

interface NodeRef {
  /** Relative path inside the archive, "" for the root, segments joined with "/". */
  readonly path: string;
  /** The same path as raw bytes: names need not be UTF-8. */
  readonly rawPath: Buffer;
}

export type NarEvent =
  | (NodeRef & { readonly kind: "directory" })
  | (NodeRef & { readonly kind: "file"; readonly executable: boolean; readonly size: number })
  /** Part of the preceding file's contents; the parts of one file add up to its `size`. */
  | { readonly kind: "data"; readonly chunk: Buffer }
  | (NodeRef & { readonly kind: "symlink"; readonly target: string; readonly rawTarget: Buffer });

interface DirFrame extends NodeRef {
  readonly depth: number;
  last: Buffer | undefined;
}

/**
 * Parses a NAR. Data chunks may be views into the source's own chunks. The parser holds at
 * most one source chunk plus one token, so file contents of any size pass through.
 */
export async function* decodeNar(source: NarSource): AsyncGenerator<NarEvent> {
  const p = new NarParser(source);
  try {
    yield* parse(p);
  } finally {
    // Stop the source too (a stream is destroyed) when parsing fails or the consumer stops.
    await p.close();
  }
}

async function* parse(p: NarParser): AsyncGenerator<NarEvent> {
  const magic = await p.readString(MAX_TAG, () => p.fail(0, `not a NAR: expected "${NAR_MAGIC}"`));
  if (!magic.equals(MAGIC))
    p.fail(0, `not a NAR: expected magic "${NAR_MAGIC}", got ${show(magic)}`);
  const stack: DirFrame[] = [];
  let next: (NodeRef & { depth: number }) | undefined = { path: "", rawPath: EMPTY, depth: 0 };
  for (;;) {
    if (next) {
      const dir: DirFrame | undefined = yield* p.node(next);
      next = undefined;
      if (dir) {
        stack.push(dir);
        continue;
      }
    } else {
      const dir = stack[stack.length - 1] as DirFrame;
      p.where = dir.path;
      const at = p.offset;
      const tag = await p.readTag('"entry" or ")"');
      if (tag === "entry") {
        next = await p.entryHeader(dir);
        continue;
      }
      if (tag !== ")") p.fail(at, `expected "entry" or ")", got ${show(tag)}`);
      stack.pop();
    }
    // A node has ended: either the root, or the node inside an entry, which ")" now closes.
    if (stack.length === 0) break;
    p.where = (stack[stack.length - 1] as DirFrame).path;
    await p.expect(")");
  }
  p.where = undefined;
  await p.expectEnd();
}

const MAGIC = Buffer.from(NAR_MAGIC);
const SLASH = Buffer.from("/");

class NarParser extends NarReader {
  /** Parses "(" "type" and the node; for a directory, returns the frame its entries fill. */
  async *node(n: NodeRef & { depth: number }): AsyncGenerator<NarEvent, DirFrame | undefined> {
    this.where = n.path;
    await this.expect("(");
    await this.expect("type");
    const at = this.offset;
    const type = await this.readTag("a node type");
    if (type === "directory") {
      yield { kind: "directory", path: n.path, rawPath: n.rawPath };
      return { ...n, last: undefined };
    }
    if (type === "symlink") {
      await this.expect("target");
      const tat = this.offset;
      const target = await this.readString(NAR_MAX_TARGET, (len) =>
        this.fail(tat, `symlink target of ${len} bytes is longer than ${NAR_MAX_TARGET}`),
      );
      if (target.length === 0) this.fail(tat, "symlink target is empty");
      if (target.includes(0)) this.fail(tat, "symlink target contains a NUL byte");
      yield {
        kind: "symlink",
        path: n.path,
        rawPath: n.rawPath,
        target: target.toString(),
        rawTarget: target,
      };
    } else if (type === "regular") {
      yield* this.regular(n);
    } else {
      this.fail(at, `unknown node type ${show(type)}`);
    }
    await this.expect(")");
    return undefined;
  }

  private async *regular(n: NodeRef): AsyncGenerator<NarEvent> {
    let at = this.offset;
    let tag = await this.readTag('"executable" or "contents"');
    const executable = tag === "executable";
    if (executable) {
      const vat = this.offset;
      await this.readString(0, () => this.fail(vat, 'non-empty value after "executable"'));
      at = this.offset;
      tag = await this.readTag('"contents"');
    }
    if (tag !== "contents") {
      this.fail(at, `expected ${executable ? "" : '"executable" or '}"contents", got ${show(tag)}`);
    }
    const sat = this.offset;
    const size = await this.readLength(Number.MAX_SAFE_INTEGER, (len) =>
      this.fail(sat, `file size ${len} is too large`),
    );
    yield { kind: "file", path: n.path, rawPath: n.rawPath, executable, size };
    for (let left = size; left > 0; ) {
      const chunk = await this.readChunk(left);
      left -= chunk.length;
      yield { kind: "data", chunk };
    }
    await this.checkPadding(size);
  }

  /** Parses "(" "name" str(name) "node" of an entry and returns the child to parse. */
  async entryHeader(dir: DirFrame): Promise<NodeRef & { depth: number }> {
    await this.expect("(");
    await this.expect("name");
    const at = this.offset;
    const name = await this.readString(NAR_MAX_NAME, (len) =>
      this.fail(at, `entry name of ${len} bytes is longer than ${NAR_MAX_NAME}`),
    );
    const problem = nameProblem(name);
    if (problem) this.fail(at, `invalid entry name ${show(name)}: ${problem}`);
    if (dir.last) {
      const order = Buffer.compare(name, dir.last);
      if (order === 0) this.fail(at, `duplicate entry ${show(name)}`);
      if (order < 0)
        this.fail(at, `entry ${show(name)} is out of order: it follows ${show(dir.last)}`);
    }
    dir.last = name;
    const path = dir.path === "" ? name.toString() : `${dir.path}/${name.toString()}`;
    const depth = dir.depth + 1;
    if (depth >= NAR_MAX_DEPTH)
      this.fail(at, `'${path}' is nested ${depth} levels deep (limit ${NAR_MAX_DEPTH - 1})`);
    await this.expect("node");
    const rawPath = dir.rawPath.length === 0 ? name : Buffer.concat([dir.rawPath, SLASH, name]);
    return { path, rawPath, depth };
  }

  async expect(tag: string): Promise<void> {
    const at = this.offset;
    const got = await this.readTag(`"${tag}"`);
    if (got !== tag) this.fail(at, `expected "${tag}", got ${show(got)}`);
  }

  /** Reads a short token as text; `expected` describes what would have been valid. */
  async readTag(expected: string): Promise<string> {
    const at = this.offset;
    const s = await this.readString(MAX_TAG, (len) =>
      this.fail(at, `expected ${expected}, got a string of ${len} bytes`),
    );
    return s.toString("latin1");
  }
}

function nameProblem(name: Buffer): string | undefined {
  if (name.length === 0) return "it is empty";
  if (name.length <= 2 && (name.equals(DOT) || name.equals(DOTDOT)))
    return "'.' and '..' are not allowed";
  if (name.includes(0x2f)) return "it contains '/'";
  if (name.includes(0)) return "it contains a NUL byte";
  return undefined;
}

const DOT = Buffer.from(".");
const DOTDOT = Buffer.from("..");

/** Quotes bytes from the archive for an error message, escaping anything unprintable. */
function show(s: string | Buffer): string {
  const text = typeof s === "string" ? s : s.toString("utf8");
  const shown = text.length > 64 ? `${text.slice(0, 64)}…` : text;
  return JSON.stringify(shown);
}
