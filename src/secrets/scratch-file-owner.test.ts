// The scratch file of `secrets edit` goes only where no other user can redirect it: not into a
// $XDG_RUNTIME_DIR of another user (`sudo -E`) or one others may write, and a link put in its
// place is never followed, when it is written nor when it is zeroed.
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statfsSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { realpath } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { OperationError } from "../errors.js";
import { createScratchFile, scratchDirectory } from "./scratch-file.js";

const TMPFS = 0x01021994;
const shmIsTmpfs = (() => {
  try {
    return statfsSync("/dev/shm").type === TMPFS;
  } catch {
    return false;
  }
})();
const isRoot = process.geteuid?.() === 0;
const SECRET = new TextEncoder().encode("s3cret-db-password-7f1e9c");

let base: string;
beforeEach(() => {
  base = mkdtempSync("/dev/shm/nixship-scratch-test-");
});
afterEach(() => rmSync(base, { recursive: true, force: true }));

describe.skipIf(!shmIsTmpfs)("the scratch file's directory", () => {
  it("is $XDG_RUNTIME_DIR when it is this user's alone (0700)", async () => {
    chmodSync(base, 0o700);
    const scratch = await createScratchFile("db", SECRET, { XDG_RUNTIME_DIR: base });
    try {
      expect(scratch.path.startsWith(`${await realpath(base)}/nixship-secret-`)).toBe(true);
    } finally {
      await scratch.remove();
    }
  });

  it("is not a $XDG_RUNTIME_DIR others may write: /dev/shm instead, or a clear refusal", async () => {
    for (const mode of [0o777, 0o770, 0o702]) {
      chmodSync(base, mode);
      const scratch = await createScratchFile("db", SECRET, { XDG_RUNTIME_DIR: base });
      try {
        expect(scratch.path.startsWith("/dev/shm/nixship-secret-"), mode.toString(8)).toBe(true);
      } finally {
        await scratch.remove();
      }
      const err = await scratchDirectory({ XDG_RUNTIME_DIR: base }, []).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OperationError);
      expect((err as OperationError).code).toBe("no-tmpfs");
      expect((err as OperationError).message).toContain(
        `${base}: its group or others may write it (mode 0${mode.toString(8)})`,
      );
      expect((err as OperationError).hint).toMatch(/mode 0700/);
    }
  });

  it.skipIf(!isRoot)("is not another user's $XDG_RUNTIME_DIR (sudo -E)", async () => {
    chmodSync(base, 0o700);
    chownSync(base, 65534, 65534);
    const scratch = await createScratchFile("db", SECRET, { XDG_RUNTIME_DIR: base });
    try {
      expect(scratch.path.startsWith("/dev/shm/nixship-secret-")).toBe(true);
    } finally {
      await scratch.remove();
    }
    const err = await scratchDirectory({ XDG_RUNTIME_DIR: base }, []).catch((e: unknown) => e);
    expect((err as OperationError).message).toContain(
      `${base}: it is uid 65534's (mode 0700), not this user's (uid 0): its owner could put a link`,
    );
  });

  it("is not one inside a directory others may write", async () => {
    chmodSync(base, 0o777);
    const inner = join(base, "inner");
    mkdirSync(inner, { mode: 0o700 });
    const err = await scratchDirectory({ XDG_RUNTIME_DIR: inner }, []).catch((e: unknown) => e);
    expect((err as OperationError).message).toContain(
      `${inner}: the directory ${base} above it is not root's or this user's alone`,
    );
  });

  it("takes a sticky directory anyone may write, as /dev/shm is (1777)", async () => {
    chmodSync(base, 0o1777);
    expect(await scratchDirectory({ XDG_RUNTIME_DIR: base }, [])).toBe(await realpath(base));
  });
});

describe.skipIf(!shmIsTmpfs)("the scratch file", () => {
  it("is removed without following a link put in its place", async () => {
    chmodSync(base, 0o700);
    const victim = join(base, "victim");
    writeFileSync(victim, "keep me");
    const scratch = await createScratchFile("db", SECRET, { XDG_RUNTIME_DIR: base });
    unlinkSync(scratch.path);
    symlinkSync(victim, scratch.path);
    await scratch.remove();
    expect(readFileSync(victim, "utf8")).toBe("keep me");
  });

  it("the scratch directories of this user's edits that died (killed outright) go before the next edit's; a live one's stay", async () => {
    const dead = execFileSync("sh", ["-c", "echo $$"], { encoding: "utf8" }).trim();
    const left = join(base, `nixship-secret-${dead}-0123456789abcdef`);
    mkdirSync(left, { mode: 0o700 });
    writeFileSync(join(left, "db-password"), SECRET, { mode: 0o600 });
    const live = join(base, `nixship-secret-${process.pid}-fedcba9876543210`);
    mkdirSync(live, { mode: 0o700 });
    writeFileSync(join(live, "api-token"), SECRET, { mode: 0o600 });
    chmodSync(base, 0o700);
    const scratch = await createScratchFile("web-token", SECRET, { XDG_RUNTIME_DIR: base });
    try {
      expect(existsSync(left)).toBe(false);
      expect(readFileSync(join(live, "api-token"))).toEqual(Buffer.from(SECRET));
    } finally {
      await scratch.remove();
    }
  });

  it("is zeroed, then removed, when it is a file", async () => {
    chmodSync(base, 0o700);
    const scratch = await createScratchFile("db", SECRET, { XDG_RUNTIME_DIR: base });
    expect(readFileSync(scratch.path)).toEqual(Buffer.from(SECRET));
    expect(statfsSync(scratch.path).type).toBe(TMPFS);
    await scratch.remove();
    expect(() => readFileSync(scratch.path)).toThrow(/ENOENT/);
  });
});
