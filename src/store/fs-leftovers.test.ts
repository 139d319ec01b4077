// The leftovers of writers that died in a directory store: temp and lock files beside objects,
// and staging directories, removed once untouched since the cutoff; young ones, objects whose
// names only look alike, and anything behind a link stay.
import { mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeLeftovers } from "./fs-leftovers.js";
import { STAGING_HOME } from "./fs-staging.js";
import { FsStore } from "./fs-store.js";

let work: string;
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-leftovers-"));
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

const DAY = 86400_000;
const twoDaysAgo = () => new Date(Date.now() - 2 * DAY);

async function put(path: string, body: string, old: boolean): Promise<void> {
  await writeFile(path, body);
  if (old) await utimes(path, twoDaysAgo(), twoDaysAgo());
}

/** A store with a leftover of each kind, old and young, and what must stay. */
async function storeWithLeftovers(name: string): Promise<{ root: string; outside: string }> {
  const root = join(work, name);
  const store = new FsStore(root, { fsync: false });
  await store.put("releases/prod/2.json", Buffer.from("{}"));
  await store.put("nar/a.nar", Buffer.from("nar"));
  await store.close();
  await put(join(root, "releases/prod/.2.origin.json.nixship-tmp-6e50d0a8ad75"), "12345", true);
  await put(join(root, "nar/.b.nar.nixship-tmp-00ff"), "1234567", true);
  await put(join(root, "nar/.c.nar.nixship-tmp-aa"), "young", false);
  await put(join(root, "releases/prod/.2.json.nixship-lock"), "42\n", true);
  // Objects whose names only look like a temp file's (not hex; not at the end).
  await put(join(root, "nar/x.nixship-tmp-zz"), "kept", true);
  await put(join(root, "nar/.d.nixship-tmp-00.nar"), "kept", true);
  // A staging directory a push left, and a young one (a push at work).
  const stale = join(root, STAGING_HOME, "0123456789ab");
  await mkdir(stale, { recursive: true });
  await put(join(stale, "nar-1"), "x".repeat(100), false);
  await utimes(stale, twoDaysAgo(), twoDaysAgo());
  const live = join(root, STAGING_HOME, "ba9876543210");
  await mkdir(live, { recursive: true });
  // A link to a directory outside the store holding an old temp file: never followed.
  const outside = join(work, `${name}-outside`);
  await mkdir(outside);
  await put(join(outside, ".e.nixship-tmp-11"), "not the store's", true);
  await symlink(outside, join(root, "nar/linked"));
  return { root, outside };
}

describe("removeLeftovers", () => {
  it("removes old temp files, lock files and staging directories, and nothing else", async () => {
    const { root, outside } = await storeWithLeftovers("sweep");
    const before = Date.now() - DAY;
    const dry = await removeLeftovers(root, { before, dryRun: true });
    expect(dry.removed).toEqual({ objects: 4, bytes: 5 + 7 + 3 + 100 });
    expect(dry.young).toEqual({ objects: 1, bytes: 5 });
    expect([...dry.paths].sort()).toEqual(
      [
        `${STAGING_HOME}/0123456789ab`,
        "nar/.b.nar.nixship-tmp-00ff",
        "releases/prod/.2.json.nixship-lock",
        "releases/prod/.2.origin.json.nixship-tmp-6e50d0a8ad75",
      ].sort(),
    );
    expect(dry.problems).toEqual([]);
    // A dry run removes nothing.
    expect(await readdir(join(root, "nar"))).toHaveLength(6);

    const done = await removeLeftovers(root, { before, dryRun: false });
    expect(done).toEqual(dry);
    expect((await readdir(join(root, "nar"))).sort()).toEqual(
      [
        ".c.nar.nixship-tmp-aa",
        ".d.nixship-tmp-00.nar",
        "a.nar",
        "linked",
        "x.nixship-tmp-zz",
      ].sort(),
    );
    expect(await readdir(join(root, "releases/prod"))).toEqual(["2.json"]);
    expect(await readdir(join(root, STAGING_HOME))).toEqual(["ba9876543210"]);
    expect(await readdir(outside)).toEqual([".e.nixship-tmp-11"]);
    // Once gone, a second sweep finds nothing old.
    const again = await removeLeftovers(root, { before, dryRun: false });
    expect(again.removed).toEqual({ objects: 0, bytes: 0 });
  });

  it("follows no staging home that is a link, and takes no name without the leading dot", async () => {
    const root = join(work, "linked-home");
    const store = new FsStore(root, { fsync: false });
    await store.put("nar/a.nar", Buffer.from("nar"));
    // Another's directory, old, where a link named as the staging home leads.
    const victim = join(work, "linked-home-victim");
    await mkdir(join(victim, "0123456789ab"), { recursive: true });
    await put(join(victim, "0123456789ab", "data"), "theirs", true);
    await utimes(join(victim, "0123456789ab"), twoDaysAgo(), twoDaysAgo());
    await symlink(victim, join(root, STAGING_HOME));
    // Files whose names end as ours do, but are no temp or lock file of a key.
    await mkdir(join(root, "notes"));
    await put(join(root, "notes/backup.nixship-lock"), "kept", true);
    await put(join(root, "notes/x.nixship-tmp-00"), "kept", true);
    const done = await removeLeftovers(root, { before: Date.now() - DAY, dryRun: false });
    expect(done).toEqual({
      removed: { objects: 0, bytes: 0 },
      young: { objects: 0, bytes: 0 },
      paths: [],
      problems: [],
    });
    expect(await readdir(join(victim, "0123456789ab"))).toEqual(["data"]);
    expect((await readdir(join(root, "notes"))).sort()).toEqual([
      "backup.nixship-lock",
      "x.nixship-tmp-00",
    ]);
    // A push refuses to stage through the link, naming it and the fix.
    await expect(store.makeStagingDir()).rejects.toMatchObject({
      message: expect.stringContaining(
        "is not a directory (a link, or a file): nixship does not follow it",
      ),
      hint: `remove ${join(root, STAGING_HOME)}: nixship makes it again`,
    });
    expect(await readdir(victim)).toEqual(["0123456789ab"]);
    await store.close();
  });

  it("takes nothing younger than an hour, whatever the cutoff (a writer without a lease)", async () => {
    const root = join(work, "grace-0");
    await mkdir(join(root, "status/hosts"), { recursive: true });
    const tenMinutesAgo = new Date(Date.now() - 600_000);
    for (const name of [".web1.json.nixship-tmp-0a1b", ".web1.json.nixship-lock"]) {
      await writeFile(join(root, "status/hosts", name), "x");
      await utimes(join(root, "status/hosts", name), tenMinutesAgo, tenMinutesAgo);
    }
    const done = await removeLeftovers(root, { before: Date.now(), dryRun: false });
    expect(done.removed).toEqual({ objects: 0, bytes: 0 });
    expect(done.young).toEqual({ objects: 2, bytes: 2 });
    expect(await readdir(join(root, "status/hosts"))).toHaveLength(2);
  });

  it("is the directory store's removeLeftovers, and removes nothing once interrupted", async () => {
    const { root } = await storeWithLeftovers("store");
    const store = new FsStore(root, { fsync: false });
    const before = Date.now() - DAY;
    expect((await store.removeLeftovers({ before, dryRun: true })).removed.objects).toBe(4);
    const interrupted = await store.removeLeftovers({
      before,
      dryRun: false,
      signal: AbortSignal.abort(),
    });
    expect(interrupted).toMatchObject({
      removed: { objects: 0, bytes: 0 },
      problems: ["interrupted: the leftovers past those counted stay"],
    });
    expect((await store.removeLeftovers({ before, dryRun: true })).removed.objects).toBe(4);
    await store.close();
  });
});
