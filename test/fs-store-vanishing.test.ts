// A directory store read while another writer deletes: a delete removes the object and then the
// parents it left empty, so a get that opened the object a moment before finds its directory
// gone when it checks that the directory lies inside the root. That get answers "absent", as
// a get a moment later would, and never fails (it failed a push racing `cache gc` once: ENOENT
// on the realpath of gc/leases). Two processes would race the same way; here they are two loops
// of one process over the same directory, each with a store of its own.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { FsStore } from "../src/store/fs-store.js";
import { readAll } from "../src/store/helpers.js";

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-vanishing-"));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

it("a get whose object's directory a delete removes meanwhile answers absent, never an error", async () => {
  const writer = new FsStore(work, { fsync: false });
  const reader = new FsStore(work, { fsync: false });
  const key = "gc/leases/one.json";
  const rounds = 3_000;
  let found = 0;
  let absent = 0;
  const errors: string[] = [];
  const write = (async () => {
    for (let i = 0; i < rounds; i++) {
      await writer.put(key, Buffer.from(`lease ${i}`));
      await writer.delete(key);
    }
  })();
  const read = (async () => {
    for (let i = 0; i < rounds; i++) {
      try {
        if ((await readAll(reader, key)) === undefined) absent++;
        else found++;
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  })();
  await Promise.all([write, read]);
  await writer.close();
  await reader.close();
  expect(errors.slice(0, 3)).toEqual([]);
  expect(found + absent).toBe(rounds);
});
