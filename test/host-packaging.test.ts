// nixosModules.host (packaging/nixos/nixship-host.nix) evaluated by the real Nix without
// nixpkgs: `lib` and `pkgs` are small stand-ins that record what the module asks of them
// (nixpkgs cannot be fetched here). What it installs is checked to the letter: the wrapper
// nixship-activate and its trust file (from packaging/nixos/nixship-activate.nix, which the
// lab's stand-in systems build for real in test/pinned-deploy.test.ts), the one sudoers rule,
// the deploy user, and the system's nixship/health.json and nixship/secrets.
import { createHash } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { run } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { evalNixJson, LIB_OPTIONS } from "./support/nixos-stand-in.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULE = join(ROOT, "packaging/nixos/nixship-host.nix");
const TEXT = join(ROOT, "packaging/nixos/nixship-activate.nix");
const NIX_ENV = { NIX_CONFIG: TEST_NIX_CONFIG };

const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const CACHE = "https://fleet-cache.s3.eu-west-1.amazonaws.com";

interface HostEval {
  enabled: boolean;
  options: string[];
  defaults: Record<string, unknown>;
  wrapper: { destination: string; executable: boolean; text: string };
  trustedPublicKeys: string[];
  builderCmds: string;
  sudo: { condition: boolean; content?: unknown };
  users: { condition: boolean; content?: unknown };
  assertions: { assertion: boolean; message: string }[];
}

/**
 * The module called as the module system would call it: `config.services.nixship-host` is
 * the options' defaults overlaid with `values`. Types are recorded, not checked (nixpkgs'
 * merging is not here); `strMatching` patterns are checked by the tests below.
 */
async function evalHost(values: Record<string, unknown>): Promise<HostEval> {
  const expr = `
    let
      module = import ${JSON.stringify(MODULE)};
      type = name: { _type = "type"; inherit name; };
      lib = {${LIB_OPTIONS}
        makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "\${p}/bin") ps);
        concatStrings = builtins.concatStringsSep "";
        mapAttrsToList = f: attrs: map (n: f n attrs.\${n}) (builtins.attrNames attrs);
        optionalString = c: s: if c then s else "";
        types = {
          bool = type "bool"; str = type "str"; anything = type "anything";
          strMatching = pattern: type "strMatching" // { inherit pattern; };
          listOf = t: type "listOf"; nonEmptyListOf = t: type "nonEmptyListOf";
          nullOr = t: type "nullOr"; attrsOf = t: type "attrsOf";
          submodule = m: type "submodule" // { inherit m; };
        };
      };
      store = name: "/nix/store/00000000000000000000000000000000-\${name}";
      pkgs = {
        runtimeShell = store "bash/bin/bash";
        # A file's store path names a hash of its text, so the wrapper shows what it runs.
        writeText = name: text: {
          inherit name text;
          outPath = store "\${builtins.substring 0 12 (builtins.hashString "sha256" text)}-\${name}";
        };
        writeTextFile = args: args // { outPath = store args.name; };
        # Named, like writeText, by a hash of the command that makes it.
        runCommandLocal = name: env: command: {
          inherit name command;
          outPath = store "\${builtins.substring 0 12 (builtins.hashString "sha256" command)}-\${name}";
        };
      } // builtins.listToAttrs (map (name: { inherit name; value = store name; })
        [ "coreutils" "gnused" "gnugrep" "gawk" "findutils" "getent" "curl" "age" "zstd" ]);
      result = module { inherit config lib pkgs; };
      options = result.options.services.nixship-host;
      withDefault = builtins.filter (n: options.\${n} ? default) (builtins.attrNames options);
      defaults = builtins.listToAttrs
        (map (name: { inherit name; value = options.\${name}.default; }) withDefault);
      config = {
        nix.package = store "nix";
        systemd.package = store "systemd";
        services.nixship-host = defaults // { package = store "nixship-0.1.0"; } // builtins.fromJSON ${JSON.stringify(JSON.stringify(values))};
      };
      body = result.config.content;
      wrapper = builtins.head body.environment.systemPackages;
      ifOf = v: { inherit (v) condition; } // (if v.condition then { inherit (v) content; } else { });
    in {
      enabled = result.config.condition;
      options = builtins.attrNames options;
      inherit defaults;
      wrapper = { inherit (wrapper) destination executable text; };
      trustedPublicKeys = body.nix.settings.trusted-public-keys;
      builderCmds = body.system.extraSystemBuilderCmds;
      sudo = ifOf body.security.sudo.extraRules;
      users = ifOf body.users.users;
      inherit (body) assertions;
    }`;
  return await evalNixJson<HostEval>(expr);
}

/** The first 12 hex digits of the sha256 of `text`, as the stand-in pkgs.writeText names it. */
function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/** `builtins.match pattern value` by the real Nix: whether a type's pattern takes `value`. */
async function nixMatches(pattern: string, value: string): Promise<boolean> {
  const r = await run(
    "nix-instantiate",
    [
      "--eval",
      "--json",
      "--expr",
      `builtins.match ${JSON.stringify(pattern)} ${JSON.stringify(value)} != null`,
    ],
    { env: NIX_ENV },
  );
  if (r.code !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout) as boolean;
}

/** A throw from evaluating `expr` (its message), or undefined when it evaluates. */
async function evalError(expr: string): Promise<string | undefined> {
  const r = await run("nix-instantiate", ["--eval", "--strict", "--expr", expr], { env: NIX_ENV });
  return r.code === 0 ? undefined : r.stderr;
}

describe("packaging/nixos/nixship-host.nix", () => {
  it("parses with nix-instantiate --parse", async () => {
    const r = await run("nix-instantiate", ["--parse", MODULE], { env: NIX_ENV });
    expect(r.code, r.stderr).toBe(0);
  });

  it("installs nixship-activate: activate.sh with the host's trust, in an empty environment", async () => {
    const host = await evalHost({ enable: true, substituters: [CACHE], trustedKeys: [KEY] });
    expect(host.enabled).toBe(true);
    expect(host.wrapper.destination).toBe("/bin/nixship-activate");
    expect(host.wrapper.executable).toBe(true);
    const store = "/nix/store/00000000000000000000000000000000-";
    const path = [
      "nix",
      "coreutils",
      "gnused",
      "gnugrep",
      "gawk",
      "findutils",
      "getent",
      "curl",
      "age",
      "zstd",
      "systemd",
    ].map((p) => `${store}${p}/bin`);
    // The stand-in's store paths of a file name the sha256 of its text: the script is the
    // package's built activate.sh, copied, and the trust file holds the substituter and the key.
    const script = `${store}${sha256(`cp ${store}nixship-0.1.0/lib/node_modules/nixship/dist/host/activate.sh $out\n`)}-nixship-activate.sh`;
    const trust = `${store}${sha256(`substituter ${CACHE}\ntrusted-key ${KEY}\n`)}-nixship-trust`;
    expect(host.wrapper.text.split("\n")).toEqual([
      `#!${store}bash/bin/bash`,
      `# nixship-activate: nixship's activate.sh with this host's pinned trust (${trust}).`,
      "# Run by the deploy user as `sudo -n /run/current-system/sw/bin/nixship-activate ...`.",
      `exec ${store}coreutils/bin/env -i PATH=${path.join(":")} HOME=/root NIXSHIP_TRUST_FILE=${trust} ${store}bash/bin/bash ${script} "$@"`,
      "",
    ]);
    // The daemon takes the fleet's signed paths from any user, as it does for the agent.
    expect(host.trustedPublicKeys).toEqual([KEY]);
  });

  it("writes no sudoers rule and no user without a deploy user", async () => {
    const host = await evalHost({ enable: true, trustedKeys: [KEY] });
    expect(host.defaults.deployUser).toBeNull();
    expect(host.sudo).toEqual({ condition: false });
    expect(host.users).toEqual({ condition: false });
    expect(host.builderCmds).toBe("mkdir -p $out/nixship\n");
  });

  it("lets the deploy user run exactly nixship-activate as root, without a password", async () => {
    const host = await evalHost({
      enable: true,
      trustedKeys: [KEY],
      deployUser: "deploy",
      deployUserKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE deployer"],
    });
    expect(host.sudo).toEqual({
      condition: true,
      content: [
        {
          users: ["deploy"],
          runAs: "root",
          commands: [
            { command: "/run/current-system/sw/bin/nixship-activate", options: ["NOPASSWD"] },
          ],
        },
      ],
    });
    expect(host.users).toEqual({
      condition: true,
      content: {
        deploy: {
          isNormalUser: true,
          description: "nixship deploys (runs nixship-activate through sudo)",
          openssh: {
            authorizedKeys: { keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE deployer"] },
          },
        },
      },
    });
    const declaredElsewhere = await evalHost({
      enable: true,
      trustedKeys: [KEY],
      deployUser: "deploy",
      createDeployUser: false,
    });
    expect(declaredElsewhere.sudo.condition).toBe(true);
    expect(declaredElsewhere.users).toEqual({ condition: false });
  });

  it("puts the system's own checks and the secrets it takes into the system", async () => {
    const host = await evalHost({
      enable: true,
      trustedKeys: [KEY],
      healthChecks: { commands: [{ run: "systemctl is-active nginx", timeout: 20 }] },
      secrets: {
        "db-password": {
          path: "/run/secrets/db-password",
          owner: "postgres",
          group: "postgres",
          mode: "0440",
        },
      },
    });
    expect(host.builderCmds).toBe(
      [
        "mkdir -p $out/nixship",
        `cp /nix/store/00000000000000000000000000000000-${sha256('{"commands":[{"run":"systemctl is-active nginx","timeout":20}]}')}-health.json $out/nixship/health.json`,
        `cp /nix/store/00000000000000000000000000000000-${sha256("systemctl is-active nginx\n")}-health-commands $out/nixship/health-commands`,
        `cp /nix/store/00000000000000000000000000000000-${sha256("db-password postgres postgres 0440 /run/secrets/db-password\n")}-nixship-secrets $out/nixship/secrets`,
        "",
      ].join("\n"),
    );
    expect(host.assertions).toEqual([
      { assertion: true, message: expect.stringContaining("secrets.db-password") },
    ]);
    const bad = await evalHost({
      enable: true,
      trustedKeys: [KEY],
      secrets: { "a..b": { path: "/run/x", owner: "root", group: "root", mode: "0400" } },
    });
    expect(bad.assertions.map((a) => a.assertion)).toEqual([false]);
  });

  it("declares the options a host needs, with safe defaults", async () => {
    const host = await evalHost({ enable: true, trustedKeys: [KEY] });
    expect(host.options.sort()).toEqual(
      [
        "enable",
        "package",
        "substituters",
        "trustedKeys",
        "deployUser",
        "createDeployUser",
        "deployUserKeys",
        "healthChecks",
        "secrets",
      ].sort(),
    );
    expect(host.defaults).toMatchObject({
      enable: false,
      substituters: [],
      deployUser: null,
      createDeployUser: true,
      deployUserKeys: [],
      healthChecks: null,
      secrets: {},
    });
    expect(host.defaults).not.toHaveProperty("trustedKeys"); // required: no trust by default
    // No default here: nixosModules.host gives the flake's package (test/flake.test.ts).
    expect(host.defaults).not.toHaveProperty("package");
  });
});

describe("packaging/nixos/nixship-activate.nix", () => {
  const text = `(import ${JSON.stringify(TEXT)})`;

  it("refuses a trust without keys, a key that is not NAME:KEY, and a substituter that is not a URL", async () => {
    expect(await evalError(`${text}.trustText { substituters = []; trustedKeys = []; }`)).toContain(
      "the host's trust needs at least one trusted key",
    );
    expect(
      await evalError(`${text}.trustText { substituters = []; trustedKeys = [ "nokey" ]; }`),
    ).toContain("trusted key 'nokey' is not one");
    expect(
      await evalError(
        `${text}.trustText { substituters = [ "http://a b" ]; trustedKeys = [ ${JSON.stringify(KEY)} ]; }`,
      ),
    ).toContain("substituter 'http://a b' is not one");
    expect(
      await evalError(
        `${text}.trustText { substituters = [ "file:///srv/cache" ]; trustedKeys = [ ${JSON.stringify(KEY)} ]; }`,
      ),
    ).toBeUndefined();
  });

  it("takes the keys and URLs activate.sh reads, and no line break inside one", async () => {
    const keyPattern = "[^:[:space:]]+:[A-Za-z0-9+/]{43}=";
    expect(await nixMatches(keyPattern, KEY)).toBe(true);
    expect(await nixMatches(keyPattern, `${KEY}\ntrusted-key x:y`)).toBe(false);
    expect(await nixMatches(keyPattern, "a:b")).toBe(false);
    const urlPattern = "[a-z][a-z0-9+.-]*://[^[:space:]]+";
    expect(await nixMatches(urlPattern, CACHE)).toBe(true);
    expect(await nixMatches(urlPattern, `${CACHE}\nsubstituter http://evil`)).toBe(false);
    const patterns = await run(
      "nix-instantiate",
      ["--eval", "--strict", "--json", "--expr", `{ inherit (${text}) keyPattern urlPattern; }`],
      { env: NIX_ENV },
    );
    expect(JSON.parse(patterns.stdout)).toEqual({ keyPattern, urlPattern });
  });
});
