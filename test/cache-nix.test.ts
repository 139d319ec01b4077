// Our cache works with Nix and a cache written by Nix works with us, on each Nix a deployer
// may run (Debian's 2.8 and the current 2.26): a push from either's store is copied by both
// (file://), and a cache either writes passes verify, fetch --restore and fetch --import. On
// the machine's Nix also: through `cache serve`, with and without a token.
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixCopyFrom, nixCopyFromArgs, nixship, run } from "../support/cli.js";
import { startCacheServer } from "../support/serve.js";
import {
  buildFixtureWith,
  closureLines,
  currentNix,
  type DeployerNix,
  machineNix,
  nixOk,
} from "./support/deployer-nix.js";

let work: string;
const machine = machineNix();
let current: DeployerNix;
/** The fixture closure in the machine's store, and what the machine's Nix records of it. */
let root: string;
let source: Map<string, string>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-cache-nix-"));
  current = await currentNix();
  root = await buildFixtureWith(machine);
  source = await closureLines(machine, root);
});
afterAll(async () => {
  await current?.close();
  await rm(work, { recursive: true, force: true });
});

async function makeKey(name: string): Promise<{ secret: string; pub: string }> {
  const secret = join(work, `${name}.sec`);
  const r = await nixship(["key", "generate", "--name", name, "--out", secret]);
  expect(r.code, r.stderr).toBe(0);
  return { secret, pub: r.stdout.trim() };
}

/** `nix-store --dump PATH | sha256sum` by `nix`. */
async function dumpHash(nix: DeployerNix, path: string): Promise<string> {
  const out = await nixOk(nix, "sh", ["-c", `nix-store --dump ${path} | sha256sum`]);
  expect(out).toMatch(/^[0-9a-f]{64} /);
  return out;
}

describe.each([
  ["2.8", () => machine],
  ["2.26", () => current],
])("on a deployer with Nix %s", (version, nixOf) => {
  /** The fixture closure built by this Nix in its store, and what it records of it. */
  let built: string;
  let recorded: Map<string, string>;
  const readers = () => [machine, current];

  beforeAll(async () => {
    built = await buildFixtureWith(nixOf());
    recorded = await closureLines(nixOf(), built);
    expect(recorded.size).toBe(3);
  });

  for (const compression of ["zstd", "xz", "none"]) {
    it(`a ${compression} push from its store is copied by Nix 2.8 and Nix 2.26 (file://), with the NarHashes recorded`, async () => {
      const key = await makeKey(`ours-${version}-${compression}`);
      const cache = join(work, `cache-${version}-${compression}`);
      const push = await nixOf().nixship([
        "push",
        built,
        "--to",
        `file://${cache}`,
        "--key",
        key.secret,
        "--compression",
        compression,
        "--json",
      ]);
      expect(push.stderr).toBe("");
      expect(push.code).toBe(0);
      const summary = JSON.parse(push.stdout);
      expect(summary.paths).toBe(recorded.size);
      expect(summary.pushed).toBe(recorded.size);

      for (const reader of readers()) {
        const store = join(work, `store-${version}-${compression}-read-by-${reader.version}`);
        const copy = await reader.run(
          "nix",
          nixCopyFromArgs(`file://${cache}`, store, key.pub, built),
        );
        expect(copy.code, `Nix ${reader.version}: ${copy.stderr}`).toBe(0);
        expect(await closureLines(reader, built, store)).toEqual(recorded);
      }
    });
  }

  it("a push is refused by Nix 2.8 and Nix 2.26 under a key they do not trust", async () => {
    const key = await makeKey(`signer-${version}`);
    const other = await makeKey(`not-trusted-${version}`);
    const cache = join(work, `cache-${version}-untrusted`);
    const push = await nixOf().nixship([
      "push",
      built,
      "--to",
      `file://${cache}`,
      "--key",
      key.secret,
    ]);
    expect(push.code, push.stderr).toBe(0);
    for (const reader of readers()) {
      const store = join(work, `store-${version}-untrusted-${reader.version}`);
      const copy = await reader.run(
        "nix",
        nixCopyFromArgs(`file://${cache}`, store, other.pub, built),
      );
      expect(copy.code, `Nix ${reader.version}`).not.toBe(0);
      expect(copy.stderr).toMatch(/signature|not signed|trusted/i);
    }
  });

  describe(`a cache Nix ${version} writes works with nixship`, () => {
    let cache: string;
    let pub: string;

    beforeAll(async () => {
      const secret = join(work, `made-by-${version}.sec`);
      await writeFile(
        secret,
        await nixOk(nixOf(), "nix", [
          "key",
          "generate-secret",
          "--key-name",
          `made-by-${version}-1`,
        ]),
        { mode: 0o600 },
      );
      pub = (
        await nixOk(nixOf(), "sh", ["-c", `nix key convert-secret-to-public < ${secret}`])
      ).trim();
      cache = join(work, `cache-by-${version}`);
      await nixOk(nixOf(), "nix", [
        "copy",
        "--to",
        `file://${cache}?secret-key=${secret}&compression=zstd`,
        built,
      ]);
    });

    it("nixship verify accepts it", async () => {
      const r = await nixOf().nixship([
        "verify",
        "--cache",
        `file://${cache}`,
        "--trusted-key",
        pub,
        "--json",
      ]);
      expect(r.code, r.stdout).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        checked: recorded.size,
        ok: recorded.size,
        problems: [],
      });
    });

    it("nixship fetch --restore gives the tree this Nix dumps of the store path", async () => {
      const dir = join(work, `restored-from-${version}`);
      const r = await nixOf().nixship([
        "fetch",
        built,
        "--from",
        `file://${cache}`,
        "--trusted-key",
        pub,
        "--restore",
        dir,
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(await dumpHash(nixOf(), dir)).toBe(await dumpHash(nixOf(), built));
    });

    it("nixship fetch --import adds the closure to another store of this Nix's", async () => {
      const store = join(work, `store-${version}-imported`);
      const importArgs = [
        "fetch",
        built,
        "--from",
        `file://${cache}`,
        "--trusted-key",
        pub,
        "--import",
        "--store",
        store,
        "--json",
      ];
      const r = await nixOf().nixship(importArgs);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).imported).toHaveLength(recorded.size);
      expect(await closureLines(nixOf(), built, store)).toEqual(recorded);
      // This Nix's nix-store --check-validity says they are there now: nothing is imported again.
      const again = await nixOf().nixship(importArgs);
      expect(JSON.parse(again.stdout)).toMatchObject({
        imported: [],
        alreadyValid: recorded.size,
      });
    });

    it("the key file nixship writes is the format this Nix reads", async () => {
      const key = await makeKey(`for-${version}-1`);
      const text = await readFile(key.secret, "utf8");
      const derived = await nixOk(nixOf(), "sh", [
        "-c",
        `nix key convert-secret-to-public < ${key.secret}`,
      ]);
      expect(derived.trim()).toBe(key.pub);
      expect(text.endsWith("\n")).toBe(false);
    });
  });
});

describe("on the machine's Nix", () => {
  it("nix copy --from http:// through `nixship cache serve` accepts a push", async () => {
    const key = await makeKey("served");
    const cache = join(work, "cache-served");
    expect(
      (await nixship(["push", root, "--to", `file://${cache}`, "--key", key.secret])).code,
    ).toBe(0);
    const server = await startCacheServer(`file://${cache}`);
    try {
      const store = join(work, "store-http");
      const copy = await nixCopyFrom(server.url, store, key.pub, root);
      expect(copy.code, copy.stderr).toBe(0);
      expect(await closureLines(machine, root, store)).toEqual(source);
    } finally {
      await server.stop();
    }
  });

  it("a second push skips everything already in the cache", async () => {
    const key = await makeKey("again");
    const cache = join(work, "cache-again");
    await nixship(["push", root, "--to", `file://${cache}`, "--key", key.secret]);
    const again = await nixship([
      "push",
      root,
      "--to",
      `file://${cache}`,
      "--key",
      key.secret,
      "--json",
    ]);
    expect(JSON.parse(again.stdout)).toMatchObject({ pushed: 0, alreadyPresent: source.size });
  });
});

describe("cache serve with a token", () => {
  it("refuses Nix without the token and serves Nix that sends it from a netrc file", async () => {
    const key = await makeKey("guarded");
    const cache = join(work, "cache-guarded");
    expect(
      (await nixship(["push", root, "--to", `file://${cache}`, "--key", key.secret])).code,
    ).toBe(0);
    const tokenFile = join(work, "token");
    await writeFile(tokenFile, "s3cret-token\n", { mode: 0o644 });
    // A token others may read is refused, as a key would be; then it is made private.
    const exposed = await nixship([
      "cache",
      "serve",
      `file://${cache}`,
      "--listen",
      "127.0.0.1:0",
      "--token-file",
      tokenFile,
    ]);
    expect(exposed.code).toBe(2);
    expect(exposed.stderr).toContain(`--token-file ${tokenFile} may be read by others`);
    expect(exposed.stderr).not.toContain("s3cret-token");
    await chmod(tokenFile, 0o600);
    const server = await startCacheServer(`file://${cache}`, ["--token-file", tokenFile]);
    try {
      const refused = await nixCopyFrom(server.url, join(work, "store-no-token"), key.pub, root);
      expect(refused.code).not.toBe(0);
      const netrc = join(work, "netrc");
      await writeFile(netrc, "machine 127.0.0.1\nlogin nix\npassword s3cret-token\n");
      const args = nixCopyFromArgs(server.url, join(work, "store-token"), key.pub, root);
      const allowed = await run("nix", [...args, "--option", "netrc-file", netrc]);
      expect(allowed.code, allowed.stderr).toBe(0);
    } finally {
      await server.stop();
    }
  });
});
