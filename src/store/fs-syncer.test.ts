import { spawnSync } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FileSystemSyncer } from "./fs-syncer.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-fs-syncer-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A stand-in for `sync`: logs the pid of the shell that ran it, then hangs while `hang`
 * exists, fails while `fail` exists, and otherwise runs the real `sync` with its arguments.
 */
async function fakeSync(): Promise<{ command: string; shells: () => Promise<string[]> }> {
  const command = join(dir, "fake-sync");
  await writeFile(
    command,
    `#!/bin/sh
echo "$PPID" >> '${dir}/shells'
while [ -e '${dir}/hang' ]; do sleep 0.05; done
if [ -e '${dir}/fail' ]; then echo "fake-sync: the disk is on fire" >&2; exit 3; fi
exec sync "$@"
`,
  );
  await chmod(command, 0o755);
  const shells = async () =>
    (await readFile(join(dir, "shells"), "utf8").catch(() => "")).split("\n").filter(Boolean);
  return { command, shells };
}

describe("FileSystemSyncer", () => {
  it("runs every sync through one long-lived shell, in order", async () => {
    const { command, shells } = await fakeSync();
    const syncer = new FileSystemSyncer(dir, { command });
    try {
      syncer.start();
      await Promise.all([syncer.sync(), syncer.sync(), syncer.sync()]);
      await syncer.sync();
      const pids = await shells();
      expect(pids).toHaveLength(4);
      expect(new Set(pids).size).toBe(1);
      expect(pids[0]).not.toBe(String(process.pid));
    } finally {
      syncer.close();
    }
  });

  it("syncs a real file system, and names the directory and sync's words when it cannot", async () => {
    const absent = join(dir, "absent");
    const syncer = new FileSystemSyncer(absent);
    try {
      const err = await syncer.sync().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toMatchObject({
        code: "store-fs-failed",
        message: expect.stringContaining(
          `cannot flush the file system of ${absent}: 'sync' failed 1`,
        ),
      });
      expect((err as Error).message).toContain(absent.replace(/.*\//, ""));
      const real = new FileSystemSyncer(dir);
      await real.sync();
      real.close();
    } finally {
      syncer.close();
    }
  });

  it("keeps its shell after a failed sync", async () => {
    const { command, shells } = await fakeSync();
    const syncer = new FileSystemSyncer(dir, { command });
    try {
      await writeFile(join(dir, "fail"), "");
      await expect(syncer.sync()).rejects.toThrow(
        /'sync' failed 3: fake-sync: the disk is on fire/,
      );
      await rm(join(dir, "fail"));
      await syncer.sync();
      expect(new Set(await shells()).size).toBe(1);
    } finally {
      syncer.close();
    }
  });

  it("bounds a sync in time, kills the hung shell and starts a new one for the next", async () => {
    const { command, shells } = await fakeSync();
    const syncer = new FileSystemSyncer(dir, { command, timeoutMs: 300 });
    try {
      await writeFile(join(dir, "hang"), "");
      const started = Date.now();
      const hung = syncer.sync();
      const queued = syncer.sync();
      await expect(hung).rejects.toThrow(/took longer than 0.3 s/);
      expect(Date.now() - started).toBeLessThan(10_000);
      // The one queued behind it runs in a new shell, and times out there too.
      await expect(queued).rejects.toThrow(/took longer than/);
      await rm(join(dir, "hang"));
      await syncer.sync();
      const pids = await shells();
      expect(new Set(pids).size).toBe(3);
    } finally {
      syncer.close();
    }
  });

  it("fails the sync in flight when its shell dies, and recovers at the next", async () => {
    const { command, shells } = await fakeSync();
    const syncer = new FileSystemSyncer(dir, { command });
    try {
      await writeFile(join(dir, "hang"), "");
      const inFlight = syncer.sync();
      let pids: string[] = [];
      for (let i = 0; i < 200 && pids.length === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25));
        pids = await shells();
      }
      expect(pids).toHaveLength(1);
      process.kill(Number(pids[0]), "SIGKILL");
      await expect(inFlight).rejects.toThrow(/its shell ended \(SIGKILL\)/);
      await rm(join(dir, "hang"));
      await syncer.sync();
      expect(new Set(await shells()).size).toBe(2);
    } finally {
      syncer.close();
    }
  });

  it("fails the syncs still waiting when closed", async () => {
    const { command, shells } = await fakeSync();
    const syncer = new FileSystemSyncer(dir, { command });
    await writeFile(join(dir, "hang"), "");
    const syncs = [syncer.sync(), syncer.sync()];
    syncer.close();
    for (const s of syncs) await expect(s).rejects.toThrow(/it was closed/);
    // The shell still runs the request it was sent before the close (it may start late on a
    // busy machine): let it begin (it writes into the directory) before letting it end, so
    // that nothing writes there while the directory is removed.
    const until = Date.now() + 10_000;
    while ((await shells()).length === 0 && Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(await shells()).toHaveLength(1);
    await rm(join(dir, "hang"));
  });

  it("holds the process open only while a sync is in flight", () => {
    const module = fileURLToPath(new URL("../../dist/store/fs-syncer.js", import.meta.url));
    const script = `
      const { FileSystemSyncer } = await import(${JSON.stringify(module)});
      const syncer = new FileSystemSyncer(${JSON.stringify(dir)});
      syncer.start();
      syncer.sync().then(() => console.log("synced"));
    `;
    const run = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      encoding: "utf8",
      timeout: 30_000,
    });
    // Exits by itself after the sync: neither the idle shell nor its pipes keep it alive.
    expect(run.error).toBeUndefined();
    expect(run.stdout.trim()).toBe("synced");
    expect(run.status).toBe(0);
  });
});
