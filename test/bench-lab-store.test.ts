// bench:delta's lab store: on the disk, the bench's labs directory as it is; on a tmpfs, one
// mounted afresh under the bench's directory for that lab alone, and unmounted after (root).
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { output } from "../bench/delta-corpora.js";
import { labsDir } from "../bench/lab-store.js";

const local = (command: string, args: readonly string[]) =>
  output(command, args, { timeoutMs: 30_000 });

/** The file system type mounted at `dir`, or undefined when nothing is mounted there. */
async function mountedType(dir: string): Promise<string | undefined> {
  for (const line of (await readFile("/proc/self/mountinfo", "utf8")).split("\n")) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - TYPE SOURCE SUPEROPTIONS
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (fields[4] === dir && dash > 0) return fields[dash + 1];
  }
  return undefined;
}

describe("labsDir", () => {
  const roots: string[] = [];
  afterEach(async () => {
    for (const root of roots.splice(0)) {
      await local("umount", [join(root, "tmpfs-t")]).catch(() => "");
      await rm(root, { recursive: true, force: true });
    }
  });
  const newRoot = async () => {
    const root = await mkdtemp(join(tmpdir(), "nixship-lab-store-"));
    roots.push(root);
    return root;
  };

  it("on the disk is the bench's labs directory, and mounts nothing", async () => {
    const root = await newRoot();
    const labs = labsDir(root, "t", "disk", local);
    expect(labs.dir).toBe(join(root, "labs"));
    await labs.prepare();
    expect(await mountedType(labs.dir)).toBeUndefined();
    await labs.release();
  });

  it("on a tmpfs mounts one afresh for the lab, and unmounts it", async () => {
    const root = await newRoot();
    const labs = labsDir(root, "t", "tmpfs", local);
    expect(labs.dir).toBe(join(root, "tmpfs-t"));
    await labs.prepare();
    expect(await mountedType(labs.dir)).toBe("tmpfs");
    await writeFile(join(labs.dir, "left"), "by a run killed outright");
    // A run after one killed outright: the tmpfs it left goes, and a new one is empty.
    await labs.prepare();
    expect(await mountedType(labs.dir)).toBe("tmpfs");
    expect(existsSync(join(labs.dir, "left"))).toBe(false);
    await writeFile(join(labs.dir, "lab"), "the lab's files");
    await labs.release();
    expect(await mountedType(labs.dir)).toBeUndefined();
    // Nothing of the lab stays on the disk.
    expect(existsSync(join(labs.dir, "lab"))).toBe(false);
  });
});
