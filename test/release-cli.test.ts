// `nixship release list`, `release show` and `release refresh`, run as functions with an in-memory CliIO over a
// directory store that holds releases published by publishRelease.
import { mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { hostname, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CliIO, Command } from "../src/cli/command.js";
import { releaseList, releaseShow } from "../src/cli/release.js";
import { releaseRefresh } from "../src/cli/release-refresh.js";
import {
  formatPublicKey,
  formatSecretKey,
  generateSecretKey,
  publicKeyOf,
} from "../src/nix/keys.js";
import type { StorePath } from "../src/nix/store-path.js";
import type { SignedRelease } from "../src/release/release.js";
import { releaseDigest } from "../src/release/release-canonical.js";
import { verifyRelease } from "../src/release/release-sign.js";
import {
  channelKey,
  type PublishOptions,
  publishRelease,
  readChannel,
  releaseKey,
} from "../src/release/release-store.js";
import { writeStatus } from "../src/status/status-store.js";
import { FsStore } from "../src/store/fs-store.js";
import { doubledRelease, releaseOfWebHosts } from "./support/doubled-release.js";

const key = generateSecretKey("release-cli-1");
const PUBLIC = formatPublicKey(publicKeyOf(key));
const FOREIGN = formatPublicKey(publicKeyOf(generateSecretKey("someone-else-1")));
const WEB1 = `/nix/store/${"a".repeat(32)}-nixos-system-web1` as StorePath;
const WEB2 = `/nix/store/${"b".repeat(32)}-nixos-system-web2` as StorePath;
/** What an interrupted write by some other tool left as release 3. */
const TORN = Buffer.from("torn write\n");

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command with captured output; errors propagate, as main() renders them. */
async function run(command: Command, argv: readonly string[], env = {}): Promise<Run> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on("data", (d: Buffer) => out.push(d));
  stderr.on("data", (d: Buffer) => err.push(d));
  const io: CliIO = { stdout, stderr, stdin: new PassThrough(), env };
  const code = await command.run(argv, io);
  return {
    code,
    stdout: Buffer.concat(out).toString("utf8"),
    stderr: Buffer.concat(err).toString("utf8"),
  };
}

let dir: string;
let storeDir: string;
let first: SignedRelease;
let second: SignedRelease;

function options(overrides: Partial<PublishOptions> = {}): PublishOptions {
  return {
    channel: "prod",
    hosts: { web1: { path: WEB1 }, web2: { path: WEB2 } },
    kind: "deploy",
    action: "switch",
    health: {
      http: [{ url: "http://{address}/", expectStatus: 200, timeout: 5 }],
      commands: [],
    },
    confirmTimeout: 30,
    key,
    now: new Date("2026-11-21T10:00:00.000Z"),
    ...overrides,
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-release-cli-"));
  storeDir = join(dir, "store");
  const store = new FsStore(storeDir, { fsync: false });
  // The fleet's cache, where releases live.
  await store.put("nix-cache-info", Buffer.from("StoreDir: /nix/store\n"));
  first = await publishRelease(store, options());
  second = await publishRelease(
    store,
    options({ kind: "rollback", hosts: { web1: { path: WEB1 } }, now: new Date(0) }),
  );
  await store.put(releaseKey("prod", 3), TORN);
  await store.close();
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("release list", () => {
  it("lists the releases oldest first and marks the one the channel points at", async () => {
    const r = await run(releaseList, ["--channel", "prod", "--store", storeDir]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")).toEqual([
      "   SEQ  CREATED                   KIND       HOSTS  DIGEST",
      `   1    2026-11-21T10:00:00.000Z  deploy     2      ${first.digest}`,
      `*  2    1970-01-01T00:00:00.000Z  rollback   1      ${second.digest}`,
      `   3    -                         malformed  -      ${releaseDigest(TORN)}`,
      "",
    ]);
    expect(r.stderr).toMatch(/^warning: releases\/prod\/3\.json: invalid JSON/);
  });

  it("prints JSON with --json", async () => {
    const r = await run(releaseList, ["--channel", "prod", "--store", storeDir, "--json"]);
    const doc = JSON.parse(r.stdout) as { channel: string; releases: { seq: number }[] };
    expect(doc.channel).toBe("prod");
    expect(doc.releases.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(doc.releases[1]).toEqual({
      status: "ok",
      seq: 2,
      created: "1970-01-01T00:00:00.000Z",
      kind: "rollback",
      digest: second.digest,
      hosts: 1,
      current: true,
    });
  });

  it("names each missing release file and goes on", async () => {
    const gapDir = join(dir, "gaps");
    const store = new FsStore(gapDir, { fsync: false });
    const published: SignedRelease[] = [];
    for (let i = 0; i < 4; i++) published.push(await publishRelease(store, options()));
    await store.delete(releaseKey("prod", 2));
    await store.close();
    // A file that is not one (a link to nothing) is no release file either.
    await rm(join(gapDir, "releases", "prod", "3.json"));
    await symlink(join(gapDir, "nowhere.json"), join(gapDir, "releases", "prod", "3.json"));
    const r = await run(releaseList, ["--channel", "prod", "--store", gapDir]);
    expect(r.code).toBe(0);
    expect(r.stdout.split("\n")).toEqual([
      "   SEQ  CREATED                   KIND     HOSTS  DIGEST",
      `   1    2026-11-21T10:00:00.000Z  deploy   2      ${published[0]?.digest}`,
      "   2    -                         missing  -      -",
      "   3    -                         missing  -      -",
      `*  4    2026-11-21T10:00:00.000Z  deploy   2      ${published[3]?.digest}`,
      "",
    ]);
    expect(r.stderr.split("\n")).toEqual([
      "warning: releases/prod/2.json is missing (not listed): release 2 of channel prod has no file in the store (removed, or withdrawn by a publisher that lost a race)",
      "warning: releases/prod/3.json is missing (not listed): release 3 of channel prod has no file in the store (removed, or withdrawn by a publisher that lost a race)",
      "",
    ]);
    const json = await run(releaseList, ["--channel", "prod", "--store", gapDir, "--json"]);
    const doc = JSON.parse(json.stdout) as { releases: { seq: number; status: string }[] };
    expect(doc.releases.map((e) => [e.seq, e.status])).toEqual([
      [1, "ok"],
      [2, "missing"],
      [3, "missing"],
      [4, "ok"],
    ]);
    expect(doc.releases[1]).toMatchObject({
      current: false,
      problem: expect.stringContaining("releases/prod/2.json is missing"),
    });
  });

  it("says when a channel has no releases", async () => {
    const r = await run(releaseList, ["--channel", "staging", "--store", storeDir]);
    expect(r).toMatchObject({ code: 0, stdout: "" });
    expect(r.stderr).toContain("channel staging has no releases in file://");
  });

  it("refuses a store that holds no binary cache (a mistyped URL), rather than list no releases", async () => {
    const typo = join(dir, "no-such-store");
    await expect(
      run(releaseList, ["--channel", "prod", "--store", `file://${typo}`]),
    ).rejects.toMatchObject({
      code: "no-binary-cache",
      message: `file://${typo} holds no binary cache (it has no nix-cache-info)`,
    });
  });

  it("takes the store from the fleet file's cache by default", async () => {
    const fleetFile = join(dir, "nixship.json");
    const fleet = {
      cache: { url: storeDir, publicKeys: [PUBLIC] },
      hosts: { web1: { address: "192.0.2.1", system: WEB1 } },
    };
    await writeFile(fleetFile, JSON.stringify(fleet));
    const viaFlag = await run(releaseList, ["--channel", "prod", "--fleet", fleetFile]);
    expect(viaFlag.stdout).toContain(first.digest);
    const viaEnv = await run(releaseList, ["--channel", "prod"], { NIXSHIP_FLEET: fleetFile });
    expect(viaEnv.stdout).toBe(viaFlag.stdout);

    const noCache = join(dir, "no-cache.json");
    await writeFile(noCache, JSON.stringify({ hosts: fleet.hosts }));
    await expect(run(releaseList, ["--channel", "prod", "--fleet", noCache])).rejects.toThrow(
      expect.objectContaining({ code: "usage", message: expect.stringContaining("has no cache") }),
    );
    await expect(
      run(releaseList, ["--channel", "prod", "--fleet", join(dir, "missing.json")]),
    ).rejects.toThrow(
      expect.objectContaining({
        code: "fleet-file-unreadable",
        hint: expect.stringContaining("--store"),
      }),
    );
  });

  it("requires --channel beside --store alone, and refuses bad names", async () => {
    await expect(run(releaseList, ["--store", storeDir])).rejects.toThrow(
      /release list: name the channel with --channel NAME/,
    );
    await expect(run(releaseList, ["--channel", "../x", "--store", storeDir])).rejects.toThrow(
      expect.objectContaining({ code: "bad-channel", exitCode: 2 }),
    );
    await expect(run(releaseList, ["extra", "--channel", "prod"])).rejects.toThrow(
      /unexpected argument 'extra'/,
    );
  });
});

describe("release show", () => {
  it("shows the latest release, verified, and says so", async () => {
    const r = await run(releaseShow, [
      "latest",
      "--channel",
      "prod",
      "--store",
      storeDir,
      "--trusted-key",
      FOREIGN,
      "--trusted-key",
      PUBLIC,
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      [
        "release 2 of channel prod (current)",
        "  created    1970-01-01T00:00:00.000Z",
        "  expires    1970-01-08T00:00:00.000Z (EXPIRED)",
        "  kind       rollback",
        "  action     switch",
        "  health     1 HTTP check, 0 command checks",
        "  confirm    30 s",
        `  digest     ${second.digest}`,
        `  previous   ${first.digest}`,
        "  signature  key 'release-cli-1', verified against the trusted keys",
        "  published  by whom not recorded (published before nixship recorded it)",
        "hosts (1):",
        `  HOST  DESIRED${" ".repeat(WEB1.length - 7)}  RUNNING  LAST CONFIRMED`,
        `  web1  ${WEB1}  unknown  none`,
        "",
      ].join("\n"),
    );
    // Release 3 is a torn file no key signed: no warning of a newer release.
    expect(r.stderr).toBe(
      "warning: release 2 expired at 1970-01-08T00:00:00.000Z: agents refuse it; renew the channel with 'nixship release refresh'\n",
    );
  });

  it("shows a release by number without verifying, and says that too", async () => {
    const r = await run(releaseShow, ["1", "--channel", "prod", "--store", storeDir]);
    expect(r.stdout).toMatch(/^release 1 of channel prod\n/);
    expect(r.stdout).toContain("previous   none (first release of the channel)");
    expect(r.stdout).toContain("key 'release-cli-1', NOT verified (pass --trusted-key");
    expect(r.stdout).toContain(`  web2  ${WEB2}  unknown  none`);
  });

  it("prints JSON with --json", async () => {
    const r = await run(releaseShow, [
      "1",
      "--channel",
      "prod",
      "--store",
      storeDir,
      "--trusted-key",
      PUBLIC,
      "--json",
    ]);
    expect(JSON.parse(r.stdout)).toEqual({
      store: expect.stringMatching(/^file:\/\//),
      source: "releases/prod/1.json",
      current: false,
      digest: first.digest,
      signature: { key: "release-cli-1", verified: true },
      expired: Date.now() >= Date.parse(first.release.expires),
      newerRelease: null,
      warnings: Date.now() >= Date.parse(first.release.expires) ? [expect.any(String)] : [],
      origin: { status: "none" },
      release: JSON.parse(JSON.stringify(first.release)),
      hosts: [
        { host: "web1", desired: WEB1, running: null, lastConfirmed: null },
        { host: "web2", desired: WEB2, running: null, lastConfirmed: null },
      ],
    });
  });

  it("marks per host desired, running and last confirmed, from the status objects", async () => {
    const marked = join(dir, "marked");
    const store = new FsStore(marked, { fsync: false });
    const one = await publishRelease(store, options());
    await publishRelease(store, options({ hosts: { web1: { path: WEB2 }, web2: { path: WEB2 } } }));
    const now = new Date().toISOString();
    const record = (host: string, seq: number, path: StorePath, state: "success" | "failed") =>
      writeStatus(store, {
        version: 1,
        host,
        mode: "agent",
        channel: "prod",
        seq,
        desired: path,
        current: state === "success" ? path : WEB1,
        generation: 1,
        state,
        phase: state === "success" ? null : "health",
        error: state === "success" ? null : "health check failed",
        rolledBack: state === "success" ? null : true,
        startedAt: now,
        updatedAt: now,
      });
    await record("web1", one.release.seq, WEB1, "success");
    await record("web2", one.release.seq, WEB2, "success");
    // web1 failed release 2's WEB2 and went back to WEB1.
    await record("web1", 2, WEB2, "failed");
    await store.close();
    const r = await run(releaseShow, ["2", "--channel", "prod", "--store", marked, "--json"]);
    expect(JSON.parse(r.stdout).hosts).toEqual([
      { host: "web1", desired: WEB2, running: WEB1, lastConfirmed: WEB1 },
      { host: "web2", desired: WEB2, running: WEB2, lastConfirmed: WEB2 },
    ]);
    const text = await run(releaseShow, ["2", "--channel", "prod", "--store", marked]);
    const pad = " ".repeat(WEB1.length - 4);
    expect(text.stdout).toContain(`  web1  ${WEB2}  ${WEB1}  ${WEB1}\n`);
    expect(text.stdout).toContain(`  web2  ${WEB2}  same${pad}  same\n`);
  });

  it("verifies against the fleet file's releases.publicKeys, or says the fleet has none", async () => {
    const fleetWith = async (file: string, releaseKeys?: string[]) => {
      const fleet = {
        cache: { url: storeDir, publicKeys: [PUBLIC] },
        ...(releaseKeys === undefined
          ? {}
          : { releases: { channel: "prod", publicKeys: releaseKeys } }),
        hosts: { web1: { address: "192.0.2.1", system: WEB1 } },
      };
      await writeFile(join(dir, file), JSON.stringify(fleet));
      return join(dir, file);
    };
    const trusting = await fleetWith("trusting.json", [FOREIGN, PUBLIC]);
    // The fleet names the store, or --fleet sits beside --store: either way its keys count.
    for (const argv of [
      ["--fleet", trusting],
      ["--fleet", trusting, "--store", storeDir],
    ]) {
      const r = await run(releaseShow, ["1", "--channel", "prod", ...argv]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(
        `  signature  key 'release-cli-1', verified against releases.publicKeys of ${trusting}\n`,
      );
      const json = await run(releaseShow, ["1", "--channel", "prod", ...argv, "--json"]);
      expect(JSON.parse(json.stdout)).toMatchObject({
        signature: { key: "release-cli-1", verified: true },
      });
    }
    const viaEnv = await run(releaseShow, ["1", "--channel", "prod"], { NIXSHIP_FLEET: trusting });
    expect(viaEnv.stdout).toContain("verified against releases.publicKeys");

    // Keys the fleet lists that did not sign it: refused, as with --trusted-key.
    const foreign = await fleetWith("foreign.json", [FOREIGN]);
    await expect(run(releaseShow, ["1", "--channel", "prod", "--fleet", foreign])).rejects.toThrow(
      expect.objectContaining({ code: "release-untrusted-key", exitCode: 2 }),
    );
    // --trusted-key is used instead of the fleet's keys.
    const flag = await run(releaseShow, [
      "1",
      "--channel",
      "prod",
      "--fleet",
      foreign,
      "--trusted-key",
      PUBLIC,
    ]);
    expect(flag.stdout).toContain("verified against the trusted keys");

    const keyless = await fleetWith("keyless.json");
    const unverified = await run(releaseShow, ["1", "--channel", "prod", "--fleet", keyless]);
    expect(unverified.stdout).toContain(
      "NOT verified (pass --trusted-key, or a fleet file with releases.publicKeys, to check it)",
    );
  });

  it("fails with exit 2 when the release is not signed by a trusted key", async () => {
    const argv = ["latest", "--channel", "prod", "--store", storeDir, "--trusted-key", FOREIGN];
    await expect(run(releaseShow, argv)).rejects.toThrow(
      expect.objectContaining({
        code: "release-untrusted-key",
        exitCode: 2,
        message: expect.stringContaining("signed by key 'release-cli-1'"),
      }),
    );
  });

  it("fails with exit 2 on a tampered release, and on a malformed one", async () => {
    const tampered = join(dir, "tampered");
    const store = new FsStore(tampered, { fsync: false });
    const signed = await publishRelease(store, options());
    const bytes = Buffer.from(Buffer.from(signed.bytes).toString().replace(WEB2, WEB1));
    await store.delete("releases/prod/1.json");
    await store.put("releases/prod/1.json", bytes);
    await store.close();
    await expect(
      run(releaseShow, ["1", "--channel", "prod", "--store", tampered, "--trusted-key", PUBLIC]),
    ).rejects.toThrow(expect.objectContaining({ code: "release-bad-signature", exitCode: 2 }));
    await expect(run(releaseShow, ["3", "--channel", "prod", "--store", storeDir])).rejects.toThrow(
      expect.objectContaining({ code: "release-malformed", exitCode: 2 }),
    );
  });

  it("fails with exit 2 on a signed release that names a host in two shards, naming the host and both shards", async () => {
    const doubledDir = join(dir, "doubled");
    const store = new FsStore(doubledDir, { fsync: false });
    const release = releaseOfWebHosts(WEB1);
    const { own, other } = await doubledRelease(release, key, "web-7", { store });
    await store.close();
    for (const which of ["1", "latest"]) {
      for (const keys of [[], ["--trusted-key", PUBLIC]]) {
        await expect(
          run(releaseShow, [which, "--channel", "prod", "--store", doubledDir, ...keys]),
        ).rejects.toThrow(
          expect.objectContaining({
            code: "release-host-twice",
            exitCode: 2,
            message: expect.stringContaining(
              `release 1 of channel prod names host 'web-7' in shard ${other}, but its shard is ${own}`,
            ),
          }),
        );
      }
    }
  });

  it("fails with exit 1 when there is no such release", async () => {
    await expect(run(releaseShow, ["9", "--channel", "prod", "--store", storeDir])).rejects.toThrow(
      expect.objectContaining({
        code: "release-not-found",
        exitCode: 1,
        message: expect.stringContaining("channel prod has no release 9"),
      }),
    );
    await expect(
      run(releaseShow, ["latest", "--channel", "staging", "--store", storeDir]),
    ).rejects.toThrow(expect.objectContaining({ code: "release-not-found", exitCode: 1 }));
  });

  it("refuses a bad release number", async () => {
    // (No SEQ at all is the latest.)
    for (const argv of [["0"], ["x"], ["1", "2"]]) {
      await expect(
        run(releaseShow, [...argv, "--channel", "prod", "--store", storeDir]),
      ).rejects.toThrow(expect.objectContaining({ code: "usage", exitCode: 2 }));
    }
  });
});

describe("freeze protection", () => {
  it("release show latest warns when the channel names an older release than a signed one", async () => {
    const replayed = join(dir, "replayed");
    const store = new FsStore(replayed, { fsync: false });
    const one = await publishRelease(store, options());
    await publishRelease(store, options({ hosts: { web1: { path: WEB2 } } }));
    await store.put(channelKey("prod"), one.bytes);
    await store.close();
    const args = ["latest", "--channel", "prod", "--store", replayed, "--trusted-key", PUBLIC];
    const r = await run(releaseShow, [...args, "--json"]);
    expect(JSON.parse(r.stdout)).toMatchObject({ current: true, newerRelease: 2 });
    const text = await run(releaseShow, args);
    expect(text.stderr).toContain(
      "warning: the channel names release 1, but release 2 exists and is signed by a trusted key: the channel was replayed",
    );
  });

  it("release refresh signs the channel's release again, with a later expiry, as a new release", async () => {
    const refreshed = join(dir, "refreshed");
    const store = new FsStore(refreshed, { fsync: false });
    const old = await publishRelease(
      store,
      options({ now: new Date(Date.now() - 6 * 86400_000), maxAge: 7 * 86400 }),
    );
    await store.close();
    const releaseKeyFile = join(dir, "release.sec");
    await writeFile(releaseKeyFile, formatSecretKey(key), { mode: 0o600 });
    const fleetFile = join(dir, "refresh-fleet.json");
    await writeFile(
      fleetFile,
      JSON.stringify({
        cache: { url: refreshed, publicKeys: [PUBLIC] },
        releases: { channel: "prod", publicKeys: [PUBLIC], maxAge: 86400 },
        hosts: {
          web1: { delivery: "agent", system: WEB1 },
          web2: { delivery: "agent", system: WEB2 },
        },
      }),
    );
    const before = Date.now();
    const r = await run(releaseRefresh, [
      "--fleet",
      fleetFile,
      "--release-key",
      releaseKeyFile,
      "--json",
    ]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { seq: number; expires: string; replaced: number };
    expect(out).toMatchObject({ channel: "prod", seq: 2, replaced: 1 });
    // maxAge of the fleet: a day from now.
    const expires = Date.parse(out.expires);
    expect(expires).toBeGreaterThanOrEqual(before + 86400_000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 86400_000);
    const reread = new FsStore(refreshed, { fsync: false });
    try {
      const channel = await readChannel(reread, "prod");
      if (channel.status !== "found") throw new Error("no channel");
      const { release } = verifyRelease(channel.bytes, [publicKeyOf(key)], "channel");
      expect(release).toMatchObject({
        seq: 2,
        kind: "refresh",
        previous: old.digest,
        hosts: old.release.hosts,
        action: old.release.action,
        health: old.release.health,
        confirmTimeout: old.release.confirmTimeout,
      });
    } finally {
      await reread.close();
    }
    // Who refreshed it is signed beside it, and release show names them (a refresh has no
    // source of its own).
    const shown = await run(releaseShow, ["2", "--channel", "prod", "--fleet", fleetFile]);
    const by = `${userInfo().username}@${hostname()}`;
    expect(shown.stdout).toContain(`  published  by ${by} (signed by key 'release-cli-1')\n`);
    const json = await run(releaseShow, ["2", "--channel", "prod", "--fleet", fleetFile, "--json"]);
    expect(JSON.parse(json.stdout).origin).toEqual({
      status: "trusted",
      keyName: "release-cli-1",
      by,
      sources: [],
    });
  });

  it("release refresh of a channel without a signed release says there is nothing to refresh", async () => {
    const empty = join(dir, "empty");
    const fleetFile = join(dir, "empty-fleet.json");
    await writeFile(
      fleetFile,
      JSON.stringify({
        cache: { url: empty, publicKeys: [PUBLIC] },
        releases: { channel: "prod", publicKeys: [PUBLIC] },
        hosts: { web1: { delivery: "agent", system: WEB1 } },
      }),
    );
    const releaseKeyFile = join(dir, "release.sec");
    await writeFile(releaseKeyFile, formatSecretKey(key), { mode: 0o600 });
    await expect(
      run(releaseRefresh, ["--fleet", fleetFile, "--release-key", releaseKeyFile]),
    ).rejects.toThrow(
      expect.objectContaining({
        code: "usage",
        message: expect.stringContaining("there is nothing to refresh"),
      }),
    );
  });
});
