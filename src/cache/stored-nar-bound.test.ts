// A stored NAR is read no further than its signed NarSize compresses to, whoever reads it
// (fetch, restore, verify, deltas): FileSize is not signed, and a cache writer without the key
// can drop it, or raise it, and pad the NAR with zstd frames that decompress to nothing.
import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Sha256 } from "../nix/hash.js";
import { buildNar, narNode } from "../nix/nar-write.js";
import type { NarInfo } from "../nix/narinfo.js";
import type { StorePath } from "../nix/store-path.js";
import type { ObjectStore } from "../store/object-store.js";
import { openStore } from "../store/url.js";
import { narKey } from "./layout.js";
import { storedNarBound, streamVerifiedNar } from "./read.js";

const MiB = 1024 * 1024;
const PATH = `/nix/store/${"a".repeat(32)}-padded` as StorePath;
let dir: string;
let store: ObjectStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-stored-nar-bound-"));
  store = await openStore(`file://${dir}`);
});
afterAll(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** The NAR, zstd-compressed, then `padding` bytes of a skippable frame zstd reads past. */
function padded(nar: Buffer, padding: number): Buffer {
  const skippable = Buffer.alloc(8 + padding);
  skippable.writeUInt32LE(0x184d2a50, 0);
  skippable.writeUInt32LE(padding, 4);
  return Buffer.concat([execFileSync("zstd", ["-q", "-c"], { input: nar }), skippable]);
}

const discard = () => new Writable({ write: (_c, _e, done) => done() });

describe("streamVerifiedNar's bound", () => {
  const nar = buildNar(narNode.regular(Buffer.from("a small file\n".repeat(100))));
  const file = padded(nar, 4 * MiB);
  const info: NarInfo = {
    storePath: PATH,
    url: narKey(Sha256.of(file), "zstd"),
    compression: "zstd",
    fileHash: undefined,
    fileSize: undefined,
    narHash: Sha256.of(nar),
    narSize: nar.length,
    references: [],
    deriver: undefined,
    sigs: [],
    ca: undefined,
  };

  it("is far below what the padding adds", () => {
    expect(storedNarBound(nar.length)).toBeLessThan(file.length / 8);
  });

  it("refuses a padded NAR whose narinfo says no FileSize", async () => {
    await store.put(info.url, file);
    await expect(streamVerifiedNar(store, info, discard())).rejects.toMatchObject({
      code: "file-mismatch",
      message: expect.stringContaining(`more than a NAR of ${nar.length} bytes compresses to`),
    });
  });

  it("refuses one whose FileSize says the padded size", async () => {
    const withSize = { ...info, fileHash: Sha256.of(file), fileSize: file.length };
    await expect(streamVerifiedNar(store, withSize, discard())).rejects.toMatchObject({
      code: "file-mismatch",
      message: expect.stringContaining(`more than a NAR of ${nar.length} bytes compresses to`),
    });
  });

  it("stops reading at the bound where the store says a smaller size than it sends", async () => {
    const lying: ObjectStore = {
      ...store,
      get: async (key) => {
        const got = await store.get(key);
        return got === undefined ? got : { ...got, info: { ...got.info, size: 0 } };
      },
    };
    await expect(streamVerifiedNar(lying, info, discard())).rejects.toMatchObject({
      code: "file-mismatch",
      message: expect.stringContaining(
        `holds more than ${storedNarBound(nar.length)} bytes, more than a NAR of ${nar.length} bytes compresses to`,
      ),
    });
  });

  it("reads the same NAR stored without padding", async () => {
    const plain = execFileSync("zstd", ["-q", "-c"], { input: nar });
    const unpadded = { ...info, url: narKey(Sha256.of(plain), "zstd") };
    await store.put(unpadded.url, plain);
    await expect(streamVerifiedNar(store, unpadded, discard())).resolves.toBeUndefined();
  });
});
