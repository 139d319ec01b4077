// The deployer on the current Nix (Debian trixie's 2.26, beside the machine's 2.8): caches
// nixship pushes are read by both Nixes with signatures required, caches both Nixes write are
// verified and fetched by nixship, `nixship build` of the example flake builds the outputs of
// each derivation (a bare .drv means the file itself since Nix 2.14), and a Nix older than the
// oldest tested is refused by name.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePathInfoJson } from "../src/cache/local-nix.js";
import { nixCopyFrom, nixCopyFromArgs, nixship, run } from "../support/cli.js";
import {
  currentNixOk,
  makeCurrentNixRoot,
  nixshipWithCurrentNix,
  runWithCurrentNix,
} from "../support/current-nix.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { buildFixtureClosure, FIXTURE_EXPRESSION } from "./support/fixture-closure.js";

let work: string;
let nixRoot: string;
/** The fixture closure, built by the current Nix in its own store. */
let root: string;
/** What the current Nix recorded for it: path → NarHash (nix32), NarSize, references. */
let source: Map<string, string>;

/** A closure's metadata as one comparable line per path, read by either Nix in either shape. */
function metaLines(pathInfoJson: string): Map<string, string> {
  return new Map(
    parsePathInfoJson(pathInfoJson).map((p) => [
      p.path,
      `${p.narHash.format("nix32")} ${p.narSize} ${[...p.references].sort().join(",")}`,
    ]),
  );
}

function currentMeta(path: string, store?: string): Promise<Map<string, string>> {
  const args = ["path-info", "--json", "--recursive", ...(store ? ["--store", store] : []), path];
  return currentNixOk(nixRoot, "nix", args).then(metaLines);
}

async function machineMeta(path: string, store?: string): Promise<Map<string, string>> {
  const args = ["path-info", "--json", "--recursive", ...(store ? ["--store", store] : []), path];
  const r = await run("nix", args);
  if (r.code !== 0) throw new Error(`nix path-info: ${r.stderr}`);
  return metaLines(r.stdout);
}

async function makeKey(name: string): Promise<{ secret: string; pub: string }> {
  const secret = join(work, `${name}.sec`);
  const r = await nixship(["key", "generate", "--name", name, "--out", secret]);
  expect(r.code, r.stderr).toBe(0);
  return { secret, pub: r.stdout.trim() };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-current-nix-cache-"));
  nixRoot = await makeCurrentNixRoot();
  const file = join(work, "fixture.nix");
  await writeFile(file, FIXTURE_EXPRESSION);
  root = (await currentNixOk(nixRoot, "nix-build", ["--no-out-link", file])).trim();
  source = await currentMeta(root);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(nixRoot, { recursive: true, force: true });
});

describe("the current Nix on the deployer", () => {
  it("is Nix 2.26, and its path-info --json is the object keyed by path", async () => {
    expect(await currentNixOk(nixRoot, "nix", ["--version"])).toMatch(/^nix \(Nix\) 2\.26\./);
    const shape = JSON.parse(await currentNixOk(nixRoot, "nix", ["path-info", "--json", root]));
    expect(Array.isArray(shape)).toBe(false);
    expect(Object.keys(shape)).toEqual([root]);
    expect(source.size).toBe(3);
  });
});

describe("a cache nixship pushes is read by both Nixes, signatures required", () => {
  let cache: string;
  let key: { secret: string; pub: string };

  beforeAll(async () => {
    key = await makeKey("pushed-on-current-1");
    cache = join(work, "cache-pushed-on-current");
    const push = await nixshipWithCurrentNix(nixRoot, [
      "push",
      root,
      "--to",
      `file://${cache}`,
      "--key",
      key.secret,
      "--json",
    ]);
    expect(push.code, push.stderr).toBe(0);
    expect(JSON.parse(push.stdout)).toMatchObject({ paths: 3, pushed: 3 });
  });

  it("Nix 2.26 copies the closure from it, with the NarHashes it recorded", async () => {
    const store = join(work, "store-26-from-ours");
    await currentNixOk(nixRoot, "nix", nixCopyFromArgs(`file://${cache}`, store, key.pub, root));
    expect(await currentMeta(root, store)).toEqual(source);
  });

  it("Nix 2.8 copies the closure from it too", async () => {
    const store = join(work, "store-28-from-ours");
    const copy = await nixCopyFrom(`file://${cache}`, store, key.pub, root);
    expect(copy.code, copy.stderr).toBe(0);
    expect(await machineMeta(root, store)).toEqual(source);
  });

  it("Nix 2.26 refuses it under a key it does not trust", async () => {
    const other = await makeKey("not-trusted-1");
    const store = join(work, "store-26-untrusted");
    const copy = await runWithCurrentNix(
      nixRoot,
      "nix",
      nixCopyFromArgs(`file://${cache}`, store, other.pub, root),
    );
    expect(copy.code).not.toBe(0);
    expect(copy.stderr).toMatch(/signature|not signed|trusted/i);
  });

  it("a push from Nix 2.8's store is read by Nix 2.26", async () => {
    const machineRoot = await buildFixtureClosure();
    const cache28 = join(work, "cache-pushed-on-28");
    const push = await nixship([
      "push",
      machineRoot,
      "--to",
      `file://${cache28}`,
      "--key",
      key.secret,
    ]);
    expect(push.code, push.stderr).toBe(0);
    const store = join(work, "store-26-from-28");
    await currentNixOk(
      nixRoot,
      "nix",
      nixCopyFromArgs(`file://${cache28}`, store, key.pub, machineRoot),
    );
    expect(await currentMeta(machineRoot, store)).toEqual(await machineMeta(machineRoot));
  });
});

describe("a cache Nix 2.26 writes works with nixship", () => {
  let cache: string;
  let pub: string;

  beforeAll(async () => {
    const secret = join(work, "made-by-26.sec");
    const generated = await currentNixOk(nixRoot, "nix", [
      "key",
      "generate-secret",
      "--key-name",
      "made-by-26-1",
    ]);
    await writeFile(secret, generated, { mode: 0o600 });
    pub = (
      await currentNixOk(nixRoot, "sh", ["-c", `nix key convert-secret-to-public < ${secret}`])
    ).trim();
    cache = join(work, "cache-by-26");
    await currentNixOk(nixRoot, "nix", [
      "copy",
      "--to",
      `file://${cache}?secret-key=${secret}&compression=zstd`,
      root,
    ]);
  });

  it("nixship verify accepts it", async () => {
    const r = await nixship([
      "verify",
      "--cache",
      `file://${cache}`,
      "--trusted-key",
      pub,
      "--json",
    ]);
    expect(r.code, r.stdout).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ checked: 3, ok: 3, problems: [] });
  });

  it("nixship fetch --import puts the closure into Nix 2.26's store (its nix-store --import)", async () => {
    const store = join(work, "store-26-imported");
    const args = [
      "fetch",
      root,
      "--from",
      `file://${cache}`,
      "--trusted-key",
      pub,
      "--import",
      "--store",
      store,
      "--json",
    ];
    const r = await nixshipWithCurrentNix(nixRoot, args);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).imported).toHaveLength(3);
    expect(await currentMeta(root, store)).toEqual(source);
    // Nix 2.26's nix-store --check-validity says they are there now: nothing is imported again.
    const again = await nixshipWithCurrentNix(nixRoot, args);
    expect(JSON.parse(again.stdout)).toMatchObject({ imported: [], alreadyValid: 3 });
  });

  it("nixship fetch --restore gives the tree Nix 2.26 dumps", async () => {
    const dir = join(work, "restored-from-26");
    const r = await nixship([
      "fetch",
      root,
      "--from",
      `file://${cache}`,
      "--trusted-key",
      pub,
      "--restore",
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const dumped = await runWithCurrentNix(nixRoot, "sh", [
      "-c",
      `nix-store --dump ${root} | sha256sum`,
    ]);
    const restored = await run("sh", ["-c", `nix-store --dump ${dir} | sha256sum`]);
    expect(dumped.stdout).toMatch(/^[0-9a-f]{64} /);
    expect(restored.stdout).toBe(dumped.stdout);
  });

  it("the key file nixship writes is read by Nix 2.26", async () => {
    const key = await makeKey("for-26-1");
    const derived = await currentNixOk(nixRoot, "sh", [
      "-c",
      `nix key convert-secret-to-public < ${key.secret}`,
    ]);
    expect(derived.trim()).toBe(key.pub);
  });
});

describe("nixship build of the example flake on Nix 2.26", () => {
  it("builds each host's system: the derivations' outputs, not the .drv files", async () => {
    const fleet = join(work, "build-fleet.json");
    await writeFile(
      fleet,
      JSON.stringify({
        hosts: {
          a: { address: "192.0.2.1", system: `path:${EXAMPLES_DIR}#web-v1` },
          b: { address: "192.0.2.2", system: `path:${EXAMPLES_DIR}#web-v2` },
          c: { address: "192.0.2.3", system: `path:${EXAMPLES_DIR}#web-v2` },
        },
      }),
    );
    const r = await nixshipWithCurrentNix(nixRoot, ["build", "--fleet", fleet, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/bug in nixship/);
    const out = JSON.parse(r.stdout) as { systems: { path: string; hosts: string[] }[] };
    const byHosts = Object.fromEntries(out.systems.map((s) => [s.hosts.join(","), s.path]));
    const expected = async (name: string) =>
      (
        await currentNixOk(nixRoot, "nix", [
          "eval",
          "--raw",
          `path:${EXAMPLES_DIR}#${name}.outPath`,
        ])
      ).trim();
    expect(byHosts).toEqual({ a: await expected("web-v1"), "b,c": await expected("web-v2") });
    for (const path of Object.values(byHosts)) {
      expect(path).not.toMatch(/\.drv$/);
      // Built in the current Nix's store: the system's version file is there.
      const version = await currentNixOk(nixRoot, "cat", [`${path}/nixos-version`]);
      expect(version.trim()).toMatch(/^web-v[12]$/);
    }
  });
});

describe("nixship push of a flake output on Nix 2.26", () => {
  it("builds it with that Nix and pushes its closure from that Nix's store", async () => {
    const key = await makeKey("flake-push-26-1");
    const cache = join(work, "cache-flake-push");
    const r = await nixshipWithCurrentNix(nixRoot, [
      "push",
      `path:${EXAMPLES_DIR}#web-v3`,
      "--to",
      `file://${cache}`,
      "--key",
      key.secret,
      "--json",
    ]);
    expect(r.code, r.stderr).toBe(0);
    const system = (
      await currentNixOk(nixRoot, "nix", ["eval", "--raw", `path:${EXAMPLES_DIR}#web-v3.outPath`])
    ).trim();
    const pushed = JSON.parse(r.stdout) as { pushed: number };
    expect(pushed.pushed).toBe((await currentMeta(system)).size);
    const store = join(work, "store-28-flake-push");
    const copy = await nixCopyFrom(`file://${cache}`, store, key.pub, system);
    expect(copy.code, copy.stderr).toBe(0);
  });
});

describe("a Nix older than the oldest tested", () => {
  /** A fleet file of one host running the example web-v1. */
  async function oneHostFleet(name: string): Promise<string> {
    const fleet = join(work, name);
    const system = `path:${EXAMPLES_DIR}#web-v1`;
    await writeFile(fleet, JSON.stringify({ hosts: { a: { address: "192.0.2.1", system } } }));
    return fleet;
  }

  /** A directory whose `nix` prints `line` for --version and fails anything else. */
  async function fakeNix(name: string, line: string): Promise<string> {
    const dir = join(work, name);
    await mkdir(dir, { recursive: true });
    const script = join(dir, "nix");
    await writeFile(
      script,
      `#!/bin/sh\nif [ "$1" = --version ]; then echo '${line}'; exit 0; fi\necho "ran: $*" >> ${dir}/ran\nexit 1\n`,
    );
    await chmod(script, 0o755);
    return dir;
  }

  it("is refused before any command of it runs, naming both versions", async () => {
    const dir = await fakeNix("nix-2.3", "nix (Nix) 2.3.16");
    const fleet = await oneHostFleet("old-fleet.json");
    const env = { PATH: `${dir}:${process.env.PATH}` };
    const r = await nixship(["build", "--fleet", fleet, "--json"], { env });
    expect(r.code).toBe(1);
    const error = JSON.parse(r.stdout).error as { code: string; message: string; hint: string };
    expect(error.code).toBe("nix-too-old");
    expect(error.message).toContain("2.3.16");
    expect(error.message).toContain("older than 2.8.0");
    expect(error.hint).toMatch(/upgrade Nix to 2\.8\.0 or later/);
    expect(r.stderr).not.toMatch(/bug in nixship/);
    // Nothing but --version was asked of it.
    await expect(readFile(join(dir, "ran"), "utf8")).rejects.toThrow(/ENOENT/);

    const key = await makeKey("old-nix-1");
    const push = await nixship(["push", root, "--to", `file://${work}/x`, "--key", key.secret], {
      env,
    });
    expect(push.code).toBe(1);
    expect(push.stderr).toMatch(/Nix is 2\.3\.16 .*older than 2\.8\.0/);
  });

  it("is refused when its version cannot be read at all", async () => {
    const dir = await fakeNix("nix-odd", "something else entirely");
    const fleet = await oneHostFleet("odd-fleet.json");
    const r = await nixship(["build", "--fleet", fleet], {
      env: { PATH: `${dir}:${process.env.PATH}` },
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /cannot tell the version of the local machine's Nix .*something else entirely/,
    );
  });

  it("doctor fails the local Nix with the fix", async () => {
    const dir = await fakeNix("nix-2.3-doctor", "nix (Nix) 2.3.16");
    const r = await nixship(["doctor", "--json"], { env: { PATH: `${dir}:${process.env.PATH}` } });
    expect(r.code).toBe(1);
    const checks = (
      JSON.parse(r.stdout) as {
        checks: { area: string; name: string; status: string; detail: string; fix?: string }[];
      }
    ).checks;
    const nix = checks.find((c) => c.area === "nix" && c.name === "nix");
    expect(nix).toMatchObject({ status: "fail" });
    expect(nix?.detail).toMatch(/2\.3\.16.*older than 2\.8\.0/);
  });
});
