// nixship as a Nix package, as far as an offline machine can take it. The tarball `npm pack`
// makes (the files buildNpmPackage installs) is installed into a clean directory and run, its
// zstd binding pushing a real NAR. flake.nix is evaluated by the real Nix against a stand-in
// nixpkgs (nixpkgs cannot be fetched here) whose buildNpmPackage and importNpmLock record what
// they are given, and `nix flake check` judges the shape of its outputs.
import { spawnSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_AGENT_CONFIG } from "../src/agent/config.js";
import { compactActivateScript } from "../src/host/activation.js";
import { type CliRun, run } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { LIB_OPTIONS } from "./support/nixos-stand-in.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const NIX_ENV = { NIX_CONFIG: TEST_NIX_CONFIG };
const SYSTEMS = ["x86_64-linux", "aarch64-linux"] as const;

interface PackageJson {
  name: string;
  version: string;
  license: string;
  bin: Record<string, string>;
  files: string[];
  scripts: Record<string, string>;
  allowScripts?: Record<string, boolean>;
}
interface LockEntry {
  version?: string;
  name?: string;
  resolved?: string;
  integrity?: string;
  inBundle?: boolean;
  hasInstallScript?: boolean;
}

const pkg = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as PackageJson;
const lock = JSON.parse(await readFile(join(ROOT, "package-lock.json"), "utf8")) as {
  packages: Record<string, LockEntry>;
};

/** Runs a command under coreutils' timeout: TERM after `seconds`, KILL 5 s later. */
function bounded(
  seconds: number,
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<CliRun> {
  return run("timeout", ["-k", "5", String(seconds), command, ...args], options);
}

/** As `bounded`, for a command that must succeed; its stdout. */
async function boundedOk(
  seconds: number,
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<string> {
  const r = await bounded(seconds, command, args, options);
  if (r.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${r.code}:\n${r.stderr.slice(-4000)}`);
  }
  return r.stdout;
}

/** A command's stdout as bytes (for NARs), bounded in time. */
function bytesOf(command: string, args: readonly string[]): Buffer {
  const r = spawnSync(command, args, { timeout: 30_000, maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

// The tarball first: installing it fills npm's cache with the packages the flake's registry
// URLs are checked against below.
describe("the npm package (what buildNpmPackage installs)", () => {
  let work: string;
  let packed: string[];
  let bin: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "nixship-pack-"));
    const out = await boundedOk(60, "npm", ["pack", "--json", "--pack-destination", work], {
      cwd: ROOT,
    });
    const [result] = JSON.parse(out) as { filename: string; files: { path: string }[] }[];
    if (result === undefined) throw new Error(`npm pack printed no result:\n${out}`);
    packed = result.files.map((f) => f.path);

    // A clean project that approves zstd-napi's install script, as npm 11 requires.
    const app = join(work, "app");
    await mkdir(app);
    await writeFile(
      join(app, "package.json"),
      JSON.stringify({
        name: "nixship-install-check",
        private: true,
        allowScripts: { "zstd-napi": true },
      }),
    );
    await boundedOk(
      240,
      "npm",
      [
        "install",
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        "--ignore-scripts",
        join(work, result.filename),
      ],
      { cwd: app, env: { npm_config_update_notifier: "false" } },
    );
    // The zstd binding: the one this repository's own install compiled from the same package
    // (setup's `npm ci` runs its approved script; the flake's build runs `npm rebuild`), not a
    // second compile of the same sources here, which would cost the suite half a minute.
    await cp(
      join(ROOT, "node_modules/zstd-napi/build"),
      join(app, "node_modules/zstd-napi/build"),
      {
        recursive: true,
      },
    );
    bin = join(app, "node_modules/.bin/nixship");
  }, 300_000);
  afterAll(() => rm(work, { recursive: true, force: true }));

  it("packs the built CLI and the files it reads at run time, no sources or tests", () => {
    for (const file of [
      "package.json",
      "dist/cli/bin.js",
      "dist/cache/nar-worker.js",
      "dist/host/activate.sh",
      "dist/ssm-document.json",
      "examples/flake.nix",
      "examples/system.nix",
      "examples/web/server.c",
    ]) {
      expect(packed, file).toContain(file);
    }
    expect(packed.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    expect(packed.filter((f) => f.startsWith("test/") || f.includes(".test."))).toEqual([]);
  });

  it("installs the zstd binding's package at the version this repository built", async () => {
    const installed = JSON.parse(
      await readFile(join(dirname(bin), "../zstd-napi/package.json"), "utf8"),
    ) as { version: string };
    expect(installed.version).toBe(lock.packages["node_modules/zstd-napi"]?.version);
  });

  it("runs from the clean directory: --version is package.json's", async () => {
    expect(await boundedOk(30, bin, ["--version"])).toBe(`${pkg.version}\n`);
  });

  it("embeds its packed activate.sh in the SSM document", async () => {
    const doc = JSON.parse(await boundedOk(30, bin, ["ssm", "document"])) as {
      mainSteps: { inputs: { runCommand: string[] } }[];
    };
    expect(doc.mainSteps[0]?.inputs.runCommand.join("\n")).toContain("| gzip -dc >");
    // What the document embeds (gzipped, base64), decoded: the working tree's script.
    const embedded = await boundedOk(30, bin, ["ssm", "document", "--script"]);
    expect(embedded).toBe(`${compactActivateScript()}\n`);
  });

  it("pushes a store path compressed with zstd on a worker thread, as Nix stores it", async () => {
    const dir = join(work, "push");
    const tree = join(dir, "tree");
    await mkdir(join(tree, "sub"), { recursive: true });
    await writeFile(join(tree, "big"), "nixship compresses this with zstd\n".repeat(40_000));
    await writeFile(join(tree, "sub/small"), "pushed by flake.test.ts\n");
    const path = (await boundedOk(30, "nix-store", ["--add", tree], { env: NIX_ENV })).trim();

    const key = join(dir, "cache.sec");
    const cache = join(dir, "cache");
    await boundedOk(30, bin, ["key", "generate", "--name", "flake-test-1", "--out", key]);
    const args = ["push", path, "--to", `file://${cache}`, "--key", key];
    await boundedOk(60, bin, [...args, "--compression", "zstd", "--jobs", "1"], { env: NIX_ENV });

    const nars = await readdir(join(cache, "nar"));
    expect(nars).toHaveLength(1);
    expect(nars[0]).toMatch(/\.nar\.zst$/);
    const narinfo = await readFile(join(cache, `${path.slice(11, 43)}.narinfo`), "utf8");
    expect(narinfo).toContain("Compression: zstd\n");
    const nar = bytesOf("zstd", ["-dcq", join(cache, "nar", nars[0] as string)]);
    expect(nar.equals(bytesOf("nix-store", ["--dump", path]))).toBe(true);
  });
});

/**
 * A stand-in for nixpkgs' lib: only what the flake uses, each with nixpkgs' semantics
 * (lib/attrsets.nix, strings.nix, sources.nix, fixed-points.nix, licenses.nix).
 */
const STUB_LIB = `
let
  inherit (builtins) stringLength substring;
in
rec {
  fix = f: let x = f x; in x;
  genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
  importJSON = path: builtins.fromJSON (builtins.readFile path);
  inherit (builtins) any;
  hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
  hasSuffix = suffix: s:
    let n = stringLength s; m = stringLength suffix;
    in n >= m && substring (n - m) m s == suffix;
  removePrefix = prefix: s: if hasPrefix prefix s then substring (stringLength prefix) (-1) s else s;
  # A filtered source: a second filter narrows the first; outPath copies what passes.
  cleanSourceWith = { src, filter ? _path: _type: true, name ? null }:
    let
      cleaned = src._isLibCleanSourceWith or false;
      both = path: type: filter path type && (!cleaned || src.filter path type);
      name' = if name != null then name else if cleaned then src.name else "source";
      origSrc = if cleaned then src.origSrc else src;
    in {
      _isLibCleanSourceWith = true;
      inherit origSrc;
      filter = both;
      name = name';
      outPath = builtins.path { filter = both; name = name'; path = origSrc; };
    };
  licenses.mit = { spdxId = "MIT"; shortName = "mit"; fullName = "MIT License"; free = true; };
}
`;

/**
 * A stand-in nixpkgs flake. Packages are derivations Nix can instantiate (flake check does)
 * but never build. buildNpmPackage records its arguments. importNpmLock takes exactly the
 * real one's arguments (an unknown one fails, as there) and records, per lock entry, what its
 * fetchModule would fetch: a \`resolved\` URL, checked against \`integrity\`, or nothing. extend
 * and callPackage work as nixpkgs' do, over a fixed point.
 */
const STUB_FLAKE = `{
  outputs = { self }:
    let
      lib = import ./lib.nix;
      stub = system: name: derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "echo the stand-in nixpkgs builds nothing >&2; exit 1" ];
      };
      fetchOf = module: if module ? resolved then { url = module.resolved; hash = module.integrity; } else null;
      pkgsWith = system: overlays: lib.fix (final:
        builtins.foldl' (prev: overlay: prev // overlay final prev) (base system overlays final) overlays);
      base = system: overlays: final: {
        inherit lib;
        callPackage = fn: args: fn (builtins.intersectAttrs (builtins.functionArgs fn) final // args);
        extend = overlay: pkgsWith system (overlays ++ [ overlay ]);
        buildNpmPackage = args:
          stub system (args.name or "\${args.pname}-\${args.version}") // { buildNpmPackageArgs = args; };
        importNpmLock = {
          __functor = _:
            { npmRoot ? null
            , package ? lib.importJSON (npmRoot + "/package.json")
            , packageLock ? lib.importJSON (npmRoot + "/package-lock.json")
            , pname ? package.name or "unknown"
            , version ? package.version or "0.0.0"
            , fetcherOpts ? { }
            }@args:
            stub system "\${pname}-\${version}-sources" // {
              importNpmLockArgs = args;
              inherit package;
              fetches = builtins.mapAttrs (_: fetchOf) packageLock.packages;
            };
          npmConfigHook = stub system "npm-config-hook";
        };
      };
    in {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (system: pkgsWith system [ ]);
    };
}
`;

/**
 * Calls each of the flake's NixOS modules the way the module system would, for each system,
 * without nixpkgs (as test/agent-packaging.test.ts does): lib holds nixpkgs' mkOption, mkIf and
 * mkOverride/mkDefault. The module's definition of the package, unwrapped, becomes the agent
 * module's config value, whose ExecStart shows what the service would run.
 */
const EVAL_MODULES = `modules:
let
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);${LIB_OPTIONS}
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkDefault = lib.mkOverride 1000;
  };
  # nixpkgs' unifyModuleSyntax: without options or config, a module's attributes are its config.
  configOf = m:
    if m ? config || m ? options then m.config
    else removeAttrs m [ "_class" "_file" "key" "disabledModules" "imports" "require" "freeformType" ];
  evalOn = module: system:
    let
      pkgs = { stdenv.hostPlatform.system = system; };
      result = module { inherit config lib pkgs; };
      agent = (import (builtins.head result.imports)) { inherit config lib pkgs; };
      options = agent.options.services.nixship-agent;
      withDefault = builtins.filter (n: options.\${n} ? default) (builtins.attrNames options);
      defaults = builtins.listToAttrs (map (name: { inherit name; value = options.\${name}.default; }) withDefault);
      definition = (configOf result).services.nixship-agent.package;
      config = {
        networking.hostName = "web1";
        services.nixship-agent = defaults // {
          enable = true;
          package = definition.content;
          store = "s3://fleet-bucket/prod?region=eu-west-1";
          channel = "prod";
          releaseKeys = [ "release-1:tl1xIh0jT4GHqL+CHzULR1xNvHlRjsdv6oVH9TGTj9s=" ];
          cacheKeys = [ "cache-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=" ];
        };
      };
    in {
      key = result.key or null;
      # A file by its path, a module of the flake (nixosModules.host) by its key.
      imports = map (i:
        if builtins.isFunction i then (i { inherit config lib pkgs; }).key
        else if builtins.isAttrs i then i.key
        else toString i) result.imports;
      definition = { inherit (definition) _type priority; package = "\${definition.content}"; };
      hostTrust =
        let host = (configOf result).services.nixship-host;
        in { inherit (host) condition; inherit (host.content) enable trustedKeys; };
      execStart = agent.config.content.systemd.services.nixship-agent.serviceConfig.ExecStart;
    };
in
builtins.mapAttrs (_: module: lib.genAttrs [ ${SYSTEMS.map((s) => `"${s}"`).join(" ")} ] (evalOn module))
  (removeAttrs modules [ "host" "deployment" ])
`;

interface RecordedArgs {
  pname: string;
  version: string;
  src: string;
  npmBuildScript: string;
  npmConfigHook: string;
  npmDeps: string;
  env?: Record<string, string>;
  meta: { mainProgram: string; description: string; license: { spdxId: string } };
  [other: string]: unknown;
}
interface ModuleEval {
  key: string | null;
  imports: string[];
  definition: { _type: string; priority: number; package: string };
  execStart: string;
  hostTrust: {
    condition: boolean;
    enable: { _type: string; priority: number; content: boolean };
    trustedKeys: { _type: string; priority: number; content: string[] };
  };
}

describe("flake.nix, evaluated against a stand-in nixpkgs", () => {
  let work: string;
  let copy: string;
  let stub: string;
  let packages: Record<(typeof SYSTEMS)[number], string>;

  /** `nix eval --json` of an installable, nixpkgs overridden by the stub. */
  async function nixEval<T>(installable: string, apply?: string): Promise<T> {
    const args = ["eval", "--json", "--no-write-lock-file"];
    args.push("--override-input", "nixpkgs", `path:${stub}`, installable);
    if (apply !== undefined) args.push("--apply", apply);
    return JSON.parse(await boundedOk(60, "nix", args, { env: NIX_ENV })) as T;
  }

  /** `nix flake check --no-build` of a flake directory against the stub. */
  function flakeCheck(dir: string): Promise<CliRun> {
    const args = ["flake", "check", "--no-build", "--no-write-lock-file"];
    args.push("--override-input", "nixpkgs", `path:${stub}`, `path:${dir}`);
    return bounded(60, "nix", args, { env: NIX_ENV });
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "nixship-flake-"));
    stub = join(work, "stub");
    await mkdir(stub);
    await writeFile(join(stub, "flake.nix"), STUB_FLAKE);
    await writeFile(join(stub, "lib.nix"), STUB_LIB);

    // The repository as a checkout holds it, plus what must never enter the source: installed
    // packages, a build, and a secret key beside the flake.
    copy = join(work, "nixship");
    await mkdir(copy);
    for (const entry of [
      "flake.nix",
      "package.json",
      "package-lock.json",
      "tsconfig.json",
      "tsconfig.build.json",
      "tsconfig.client.json",
      "README.md",
      "src",
      "scripts",
      "examples",
      "packaging",
    ]) {
      await cp(join(ROOT, entry), join(copy, entry), { recursive: true });
    }
    // A test directory of its own: Nix copies the whole directory into the store to evaluate
    // it, and the repository's tests are not the store's business.
    await mkdir(join(copy, "test"));
    await writeFile(join(copy, "test/example.test.ts"), "// a test\n");
    await mkdir(join(copy, "node_modules/left-pad"), { recursive: true });
    await writeFile(join(copy, "node_modules/left-pad/index.js"), "module.exports = 1;\n");
    await mkdir(join(copy, "dist/cli"), { recursive: true });
    await writeFile(join(copy, "dist/cli/bin.js"), "// a stale build\n");
    await writeFile(join(copy, "cache.sec"), "cache-1:not-a-real-key", { mode: 0o600 });

    packages = await nixEval(
      `path:${copy}#packages`,
      "builtins.mapAttrs (_: p: p.default.outPath)",
    );
  });
  afterAll(() => rm(work, { recursive: true, force: true }));

  it("takes nixpkgs from GitHub, its only input", async () => {
    const expr = `let f = import ${join(copy, "flake.nix")}; in { inherit (f) inputs; args = builtins.functionArgs f.outputs; }`;
    const out = await boundedOk(
      30,
      "nix-instantiate",
      ["--eval", "--strict", "--json", "--expr", expr],
      {
        env: NIX_ENV,
      },
    );
    const flake = JSON.parse(out) as { inputs: Record<string, { url: string }>; args: object };
    expect(Object.keys(flake.inputs)).toEqual(["nixpkgs"]);
    expect(flake.inputs.nixpkgs?.url).toMatch(
      /^github:NixOS\/nixpkgs\/(nixos-unstable|nixos-\d\d\.\d\d)$/,
    );
    expect(flake.args).toEqual({ nixpkgs: false, self: false });
  });

  it("passes nix flake check, which notices a malformed output", async () => {
    const good = await flakeCheck(copy);
    expect(good.stderr).not.toMatch(/^error:/m);
    expect(good.code).toBe(0);

    const bad = join(work, "bad");
    await cp(copy, bad, { recursive: true });
    const text = await readFile(join(bad, "flake.nix"), "utf8");
    const broken = text.replace(
      /final: prev: \{ nixship = final\./,
      "self: super: { nixship = self.",
    );
    expect(broken).not.toBe(text);
    await writeFile(join(bad, "flake.nix"), broken);
    const r = await flakeCheck(bad);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/overlay does not take an argument named 'final'/);
  });

  it("builds nixship with buildNpmPackage: package.json's name and version, npm run build, no hash", async () => {
    for (const system of SYSTEMS) {
      const args = await nixEval<RecordedArgs>(
        `path:${copy}#packages.${system}.default.buildNpmPackageArgs`,
      );
      expect(args.pname).toBe(pkg.name);
      expect(args.version).toBe(pkg.version);
      expect(packages[system]).toMatch(
        new RegExp(`^/nix/store/[a-z0-9]{32}-${pkg.name}-${pkg.version}$`),
      );
      expect(args.npmBuildScript).toBe("build");
      expect(pkg.scripts[args.npmBuildScript]).toMatch(/^tsc /);
      expect(args).not.toHaveProperty("npmDepsHash");
      // importNpmLock's hook (the stub's only derivation of that name), not npmHooks'.
      expect(args.npmConfigHook).toMatch(/^\/nix\/store\/[a-z0-9]{32}-npm-config-hook$/);
      expect(args.meta.mainProgram).toBe(Object.keys(pkg.bin)[0]);
      expect(args.meta.license.spdxId).toBe(pkg.license);
    }
  });

  it("rebuilds the zstd binding from source: install scripts run, and zstd-napi's is approved", async () => {
    const args = await nixEval<RecordedArgs>(
      `path:${copy}#packages.x86_64-linux.default.buildNpmPackageArgs`,
    );
    // importNpmLock's npmConfigHook runs `npm rebuild` after its `npm install --ignore-scripts`.
    expect(args.dontNpmRebuild ?? false).toBe(false);
    expect(JSON.stringify(args.npmRebuildFlags ?? [])).not.toContain("ignore-scripts");
    expect(JSON.stringify(args.npmFlags ?? [])).not.toContain("ignore-scripts");
    expect(args.env?.npm_config_build_from_source).toBe("true");
    expect(lock.packages["node_modules/zstd-napi"]?.hasInstallScript).toBe(true);
    expect(pkg.allowScripts?.["zstd-napi"]).toBe(true);
  });

  it("hands importNpmLock the lock with every registry package's tarball URL and integrity", async () => {
    const deps = await nixEval<{
      fetches: Record<string, { url: string; hash: string } | null>;
      package: { name: string; version: string; allowScripts?: object };
      npmRoot: string;
      src: string;
    }>(
      `path:${copy}#packages.x86_64-linux.default`,
      "p: with p.buildNpmPackageArgs; { inherit (npmDeps) fetches package; npmRoot = toString npmDeps.importNpmLockArgs.npmRoot; src = toString src; }",
    );
    expect(deps.npmRoot).toBe(deps.src);
    expect(deps.package).toMatchObject({ name: pkg.name, version: pkg.version });
    expect(deps.package.allowScripts).toEqual(pkg.allowScripts);

    const expected: Record<string, { url: string; hash: string } | null> = {};
    for (const [key, entry] of Object.entries(lock.packages)) {
      if (key === "") {
        expected[key] = null; // the project itself
        continue;
      }
      if (entry.integrity === undefined) {
        expect(entry.inBundle, `${key} has no integrity and is not bundled`).toBe(true);
        expected[key] = null;
        continue;
      }
      const name = entry.name ?? key.slice(key.lastIndexOf("node_modules/") + 13);
      const base = name.slice(name.lastIndexOf("/") + 1);
      const url =
        entry.resolved ?? `https://registry.npmjs.org/${name}/-/${base}-${entry.version}.tgz`;
      expected[key] = { url, hash: entry.integrity };
    }
    expect(deps.fetches).toEqual(expected);

    // Each URL is where npm itself fetched the package from, for every tarball in its cache.
    const keys = new Set(
      (await boundedOk(60, "npm", ["cache", "ls"], { cwd: ROOT })).split("\n").filter(Boolean),
    );
    const checked: string[] = [];
    for (const [key, fetch] of Object.entries(deps.fetches)) {
      const entry = lock.packages[key];
      const name = entry?.name ?? key.slice(key.lastIndexOf("node_modules/") + 13);
      if (fetch === null || !keys.has(`pacote:tarball:${name}@${entry?.version}`)) continue;
      expect(keys.has(`make-fetch-happen:request-cache:${fetch.url}`), fetch.url).toBe(true);
      checked.push(name);
    }
    expect(checked).toContain("zstd-napi");
  });

  it("takes into its source only what the build reads", async () => {
    const args = await nixEval<RecordedArgs>(
      `path:${copy}#packages.x86_64-linux.default.buildNpmPackageArgs`,
    );
    const files = (await readdir(args.src, { recursive: true })).map(String).sort();
    const top = [...new Set(files.map((f) => f.split("/")[0]))].sort();
    expect(top).toEqual([
      "examples",
      "package-lock.json",
      "package.json",
      // packaging/nixos/nixship-activate.nix: `lab up --pinned` builds the lab's systems with it.
      "packaging",
      // scripts/assemble-activate.mjs, write-ssm-document.mjs and bundle-cli.mjs: the build's
      // host script, SSM document and bundled CLI.
      "scripts",
      "src",
      "tsconfig.build.json",
      "tsconfig.client.json",
      "tsconfig.json",
    ]);
    // Every source but the unit tests, and the files package.json ships besides the build.
    const sources = (await readdir(join(copy, "src"), { recursive: true }))
      .map((f) => `src/${f}`)
      .filter((f) => !f.endsWith(".test.ts"));
    expect(files.filter((f) => f.startsWith("src/")).sort()).toEqual(sources.sort());
    for (const shipped of pkg.files.filter((f) => f !== "dist")) {
      expect(files, shipped).toContain(shipped);
    }
    expect(files).toContain("examples/web/server.c");
    expect(files.filter((f) => f.startsWith("scripts/"))).toEqual([
      "scripts/assemble-activate.mjs",
      "scripts/bundle-cli.mjs",
      "scripts/write-ssm-document.mjs",
    ]);
    expect(
      files.filter((f) => f.startsWith("examples/aws") || f.startsWith("examples/ci")),
    ).toEqual([]);
  });

  it("has an app for each system that runs the package's bin/nixship", async () => {
    const apps = await nixEval<Record<string, { default: { type: string; program: string } }>>(
      `path:${copy}#apps`,
    );
    expect(Object.keys(apps).sort()).toEqual([...SYSTEMS].sort());
    for (const system of SYSTEMS) {
      expect(apps[system]?.default.type).toBe("app");
      expect(apps[system]?.default.program).toBe(`${packages[system]}/bin/nixship`);
    }
    // buildNpmPackage's install hook makes a wrapper in bin/ for each of package.json's bins.
    expect(pkg.bin.nixship).toBe("dist/cli/bin.js");
  });

  it("gives nixosModules.agent (and default) the flake's package for the host's system, by default", async () => {
    const modules = await nixEval<Record<string, Record<string, ModuleEval>>>(
      `path:${copy}#nixosModules`,
      EVAL_MODULES,
    );
    expect(Object.keys(modules).sort()).toEqual(["agent", "default"]);
    const all = await nixEval<string[]>(`path:${copy}#nixosModules`, "builtins.attrNames");
    expect(all).toEqual(["agent", "default", "deployment", "host"]);
    for (const system of SYSTEMS) {
      const agent = modules.agent?.[system];
      expect(agent?.imports).toHaveLength(2);
      expect(agent?.imports[0]).toMatch(
        /^\/nix\/store\/[a-z0-9]{32}-source\/packaging\/nixos\/nixship-agent\.nix$/,
      );
      // nixosModules.host, with the agent's cache keys pinned by default when the agent runs.
      expect(agent?.imports[1]).toBe("nixship#nixosModules.host");
      expect(agent?.hostTrust).toEqual({
        condition: true,
        enable: { _type: "override", priority: 1000, content: true },
        trustedKeys: {
          _type: "override",
          priority: 1000,
          content: ["cache-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM="],
        },
      });
      // mkDefault: priority 1000, so a configuration's own `package` wins.
      expect(agent?.definition).toEqual({
        _type: "override",
        priority: 1000,
        package: packages[system],
      });
      expect(agent?.execStart).toBe(
        `${packages[system]}/bin/nixship agent --config ${DEFAULT_AGENT_CONFIG}`,
      );
      expect(modules.default?.[system]).toEqual(agent);
    }
    expect(modules.agent?.["x86_64-linux"]?.key).toMatch(/\S/);
  });

  it("gives nixosModules.host: packaging/nixos/nixship-host.nix, by a key of its own, with the flake's package", async () => {
    const hosts = await nixEval<
      Record<string, { key: string; imports: string[]; package: unknown }>
    >(
      `path:${copy}#nixosModules.host`,
      `m: builtins.listToAttrs (map (system:
        let
          lib.mkDefault = content: { _type = "override"; priority = 1000; inherit content; };
          r = m { inherit lib; pkgs.stdenv.hostPlatform.system = system; };
          p = r.config.services.nixship-host.package;
        in {
          name = system;
          value = {
            inherit (r) key;
            imports = map toString r.imports;
            package = { inherit (p) _type priority; content = "\${p.content}"; };
          };
        }) [ ${SYSTEMS.map((s) => `"${s}"`).join(" ")} ])`,
    );
    for (const system of SYSTEMS) {
      const host = hosts[system];
      expect(host?.key).toBe("nixship#nixosModules.host");
      expect(host?.imports).toHaveLength(1);
      expect(host?.imports[0]).toMatch(
        /^\/nix\/store\/[a-z0-9]{32}-source\/packaging\/nixos\/nixship-host\.nix$/,
      );
      // Its built activate.sh is what the host installs; mkDefault, so a configuration's own
      // package wins.
      expect(host?.package).toEqual({
        _type: "override",
        priority: 1000,
        content: packages[system],
      });
    }
  });

  it("serves a consumer flake: its nixpkgs followed, and the overlay's pkgs.nixship the same package", async () => {
    const consumer = join(work, "consumer");
    await mkdir(consumer);
    await writeFile(
      join(consumer, "flake.nix"),
      `{
  inputs.nixpkgs.url = "path:${stub}";
  inputs.nixship.url = "path:${copy}";
  inputs.nixship.inputs.nixpkgs.follows = "nixpkgs";
  outputs = { self, nixpkgs, nixship }: {
    report = {
      package = nixship.packages.x86_64-linux.default.outPath;
      overlaid = (nixpkgs.legacyPackages.x86_64-linux.extend nixship.overlays.default).nixship.outPath;
    };
  };
}
`,
    );
    const out = await boundedOk(
      60,
      "nix",
      ["eval", "--json", "--no-write-lock-file", `path:${consumer}#report`],
      { env: NIX_ENV },
    );
    expect(JSON.parse(out)).toEqual({
      package: packages["x86_64-linux"],
      overlaid: packages["x86_64-linux"],
    });
  });

  it("gives a consumer flake its fleet: nixosModules.deployment on its hosts, lib.fleetFromConfigurations", async () => {
    // Its configurations are made by the stand-in for nixpkgs' nixosSystem, which calls the
    // modules it is given: here the flake's nixosModules.deployment.
    const consumer = join(work, "fleet-consumer");
    await mkdir(consumer);
    await cp(join(ROOT, "test/support/nixos-system.nix"), join(consumer, "nixos-system.nix"));
    await writeFile(
      join(consumer, "flake.nix"),
      `{
  inputs.nixpkgs.url = "path:${stub}";
  inputs.nixship.url = "path:${copy}";
  inputs.nixship.inputs.nixpkgs.follows = "nixpkgs";
  outputs = { self, nixpkgs, nixship }:
    let
      nixosSystem = import ./nixos-system.nix;
      toplevel = derivation { name = "system"; system = "x86_64-linux"; builder = "/bin/sh"; };
    in {
      nixosConfigurations.web1 = nixosSystem {
        inherit toplevel;
        modules = [
          nixship.nixosModules.deployment
          { nixship.deployment = { address = "10.0.0.1"; tags = [ "web" ]; policy.canary = 0; }; }
        ];
      };
      # Not deployed by nixship: it does not import the module.
      nixosConfigurations.installer = nixosSystem { inherit toplevel; modules = [ ]; };
      nixship = nixship.lib.fleetFromConfigurations {
        configurations = self.nixosConfigurations;
        ssh.user = "deploy";
      };
    };
}
`,
    );
    const out = await boundedOk(
      60,
      "nix",
      [
        "eval",
        "--json",
        "--no-write-lock-file",
        `path:${consumer}#nixship`,
        "--apply",
        "f: f // { hosts = builtins.mapAttrs (_: h: h // { system = h.system.config.system.build.toplevel.name; }) f.hosts; }",
      ],
      { env: NIX_ENV },
    );
    expect(JSON.parse(out)).toEqual({
      ssh: { user: "deploy" },
      hosts: {
        web1: {
          system: "system",
          address: "10.0.0.1",
          tags: ["web"],
          delivery: "ssh",
          sshHost: null,
          sshUser: null,
          sudo: null,
          hostKey: null,
          instanceId: null,
          targets: null,
        },
      },
      policies: { web1: { canary: 0 } },
    });
  });
});
