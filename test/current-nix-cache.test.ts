// The deployer on the current Nix (Debian trixie's 2.26, beside the machine's 2.8): its
// path-info shape, `nixship build` of the example flake builds the outputs of each derivation
// (a bare .drv means the file itself since Nix 2.14), and a Nix older than the oldest tested is
// refused by name. The caches both Nixes read and write: test/cache-nix.test.ts, on each.
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixCopyFrom, nixship } from "../support/cli.js";
import {
  buildFixtureWith,
  closureLines,
  currentNix,
  type DeployerNix,
  nixOk,
} from "./support/deployer-nix.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";

let work: string;
let current: DeployerNix;
/** The fixture closure, built by the current Nix in its own store. */
let root: string;

async function makeKey(name: string): Promise<{ secret: string; pub: string }> {
  const secret = join(work, `${name}.sec`);
  const r = await nixship(["key", "generate", "--name", name, "--out", secret]);
  expect(r.code, r.stderr).toBe(0);
  return { secret, pub: r.stdout.trim() };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-current-nix-cache-"));
  current = await currentNix();
  root = await buildFixtureWith(current);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await current?.close();
});

describe("the current Nix on the deployer", () => {
  it("is Nix 2.26, and its path-info --json is the object keyed by path", async () => {
    expect(await nixOk(current, "nix", ["--version"])).toMatch(/^nix \(Nix\) 2\.26\./);
    const shape = JSON.parse(await nixOk(current, "nix", ["path-info", "--json", root]));
    expect(Array.isArray(shape)).toBe(false);
    expect(Object.keys(shape)).toEqual([root]);
    expect((await closureLines(current, root)).size).toBe(3);
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
    const r = await current.nixship(["build", "--fleet", fleet, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/bug in nixship/);
    const out = JSON.parse(r.stdout) as { systems: { path: string; hosts: string[] }[] };
    const byHosts = Object.fromEntries(out.systems.map((s) => [s.hosts.join(","), s.path]));
    const expected = async (name: string) =>
      (
        await nixOk(current, "nix", ["eval", "--raw", `path:${EXAMPLES_DIR}#${name}.outPath`])
      ).trim();
    expect(byHosts).toEqual({ a: await expected("web-v1"), "b,c": await expected("web-v2") });
    for (const path of Object.values(byHosts)) {
      expect(path).not.toMatch(/\.drv$/);
      // Built in the current Nix's store: the system's version file is there.
      const version = await nixOk(current, "cat", [`${path}/nixos-version`]);
      expect(version.trim()).toMatch(/^web-v[12]$/);
    }
  });
});

describe("nixship push of a flake output on Nix 2.26", () => {
  it("builds it with that Nix and pushes its closure from that Nix's store", async () => {
    const key = await makeKey("flake-push-26-1");
    const cache = join(work, "cache-flake-push");
    const r = await current.nixship([
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
      await nixOk(current, "nix", ["eval", "--raw", `path:${EXAMPLES_DIR}#web-v3.outPath`])
    ).trim();
    const pushed = JSON.parse(r.stdout) as { pushed: number };
    expect(pushed.pushed).toBe((await closureLines(current, system)).size);
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
