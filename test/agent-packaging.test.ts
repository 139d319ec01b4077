// The agent's packaging against the real tools: the NixOS module parsed and its options and
// config file evaluated by Nix, the systemd unit checked by systemd-analyze (where present),
// and docs/agent.md's reference table kept to the keys the parser accepts.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import {
  AGENT_CONFIG_DEFAULTS,
  AGENT_CONFIG_KEYS,
  DEFAULT_AGENT_CONFIG,
  parseAgentConfig,
} from "../src/agent/config.js";
import { run } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { evalNixJson, LIB_OPTIONS } from "./support/nixos-stand-in.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MODULE = join(ROOT, "packaging/nixos/nixship-agent.nix");
const UNIT = join(ROOT, "packaging/systemd/nixship-agent.service");
const DOC = join(ROOT, "docs/agent.md");
const NIX_ENV = { NIX_CONFIG: TEST_NIX_CONFIG };

const RELEASE_KEY = "release-1:tl1xIh0jT4GHqL+CHzULR1xNvHlRjsdv6oVH9TGTj9s=";
const CACHE_KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";
const PACKAGE = "/nix/store/00000000000000000000000000000000-nixship-0.1.0";

/** Module option names that differ from the config file's keys. */
const OPTION_TO_KEY: Record<string, string> = { hostName: "host" };
/** Module options that configure the service, not the agent's config file. */
const SERVICE_OPTIONS = ["enable", "package", "environment", "environmentFile"];

describe("packaging/nixos/nixship-agent.nix", () => {
  it("parses with nix-instantiate --parse", async () => {
    const r = await run("nix-instantiate", ["--parse", MODULE], { env: NIX_ENV });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\(\{ config, lib, pkgs, \.\.\. \}:/);
  });

  describe("evaluated without nixpkgs", () => {
    let defaults: ModuleEval;
    let custom: ModuleEval;

    beforeAll(async () => {
      defaults = await evalModule({});
      custom = await evalModule({
        stateDir: "/srv/nixship-agent",
        jitter: 0,
        environment: { AWS_REGION: "eu-west-1" },
        environmentFile: "/run/keys/nixship-agent.env",
      });
    });

    it("declares an option, with a description, for every config key", () => {
      const names = Object.keys(defaults.options);
      const keys = names
        .filter((n) => !SERVICE_OPTIONS.includes(n))
        .map((n) => OPTION_TO_KEY[n] ?? n);
      expect(keys.sort()).toEqual([...AGENT_CONFIG_KEYS].sort());
      expect(names).toEqual(expect.arrayContaining(SERVICE_OPTIONS));
      for (const [name, option] of Object.entries(defaults.options)) {
        expect(option.isOption, name).toBe(true);
        expect(option.description, name).toMatch(/\S/);
      }
      expect(defaults.args).toEqual({ config: false, lib: false, pkgs: false });
    });

    it("has the parser's defaults, no default package, and hostName from networking", () => {
      for (const [key, value] of Object.entries(AGENT_CONFIG_DEFAULTS)) {
        expect(defaults.defaults[key], key).toEqual(value);
      }
      expect(defaults.defaults.hostName).toBe("web1"); // networking.hostName in the stub
      expect(defaults.defaults.enable).toBe(false);
      for (const required of ["package", "store", "channel", "releaseKeys", "cacheKeys"]) {
        expect(defaults.options[required]?.hasDefault, required).toBe(false);
      }
    });

    it("writes a config file that the agent's parser accepts, with exactly its keys", () => {
      expect(defaults.enabled).toBe(true);
      expect(defaults.etcPath).toBe(DEFAULT_AGENT_CONFIG);
      const json = JSON.parse(defaults.agentJson) as Record<string, unknown>;
      expect(Object.keys(json).sort()).toEqual([...AGENT_CONFIG_KEYS].sort());
      expect(parseAgentConfig(defaults.agentJson, "module")).toEqual({
        store: "s3://fleet-bucket/prod?region=eu-west-1",
        channel: "prod",
        host: "web1",
        releaseKeys: [RELEASE_KEY],
        cacheKeys: [CACHE_KEY],
        ...AGENT_CONFIG_DEFAULTS,
      });
      const changed = parseAgentConfig(custom.agentJson, "module");
      expect(changed.stateDir).toBe("/srv/nixship-agent");
      expect(changed.jitter).toBe(0);
    });

    it("trusts the cache keys in the host's Nix", () => {
      expect(defaults.trustedPublicKeys).toEqual([CACHE_KEY]);
    });

    it("defines a service that the switch it runs leaves alone", () => {
      const s = defaults.service;
      expect(s.wantedBy).toEqual(["multi-user.target"]);
      expect(s.after).toContain("network-online.target");
      expect(s.wants).toContain("network-online.target");
      expect(s.restartIfChanged).toBe(false);
      expect(s.stopIfChanged).toBe(false);
      expect(s.serviceConfig.ExecStart).toBe(
        `${PACKAGE}/bin/nixship agent --config ${DEFAULT_AGENT_CONFIG}`,
      );
      expect(s.serviceConfig.Restart).toBe("always");
      expect(s.stateDirectory).toEqual({ condition: true, content: "nixship-agent" });
      expect(s.environmentFile.condition).toBe(false);
      expect(defaults.tmpfiles.condition).toBe(false);

      const c = custom.service;
      expect(c.environment).toEqual({ AWS_REGION: "eu-west-1" });
      expect(c.environmentFile).toEqual({
        condition: true,
        content: "/run/keys/nixship-agent.env",
      });
      expect(c.stateDirectory.condition).toBe(false);
      expect(custom.tmpfiles).toEqual({
        condition: true,
        content: ["d /srv/nixship-agent 0700 root root -"],
      });
    });

    it("keeps the environment file out of the Nix store: a path value or store path fails", async () => {
      expect(defaults.assertions.every((a) => a.assertion)).toBe(true);
      expect(custom.assertions.every((a) => a.assertion)).toBe(true);
      // The path does not exist: had the module copied it into the store (by interpolating
      // it), the evaluation itself would fail on it.
      const missing = join(tmpdir(), "nixship-no-such-dir", "agent.env");
      const asPath = await evalModule({}, `{ environmentFile = ${missing}; }`);
      const inStore = await evalModule({
        environmentFile: "/nix/store/00000000000000000000000000000000-agent.env",
      });
      for (const [e, what] of [
        [asPath, "a Nix path value"],
        [inStore, "a path in the Nix store"],
      ] as const) {
        const failed = e.assertions.filter((a) => !a.assertion);
        expect(failed).toHaveLength(1);
        expect(failed[0]?.message).toContain(`services.nixship-agent.environmentFile is ${what}`);
        expect(failed[0]?.message).toContain('"/run/keys/nixship-agent.env"');
        expect(e.service.environmentFile.condition).toBe(false);
      }
      expect(asPath.assertions.map((a) => a.message).join("")).not.toContain(missing);
    });

    it("runs the service as the plain unit does", async () => {
      const unit = parseUnit(await readFile(UNIT, "utf8"));
      for (const [key, value] of Object.entries(defaults.service.serviceConfig)) {
        if (key === "ExecStart") continue; // the package's path against /usr/bin/env
        expect(unit.Service?.[key], key).toEqual([String(value)]);
      }
      expect(unit.Unit?.StartLimitIntervalSec).toEqual([
        String(defaults.service.startLimitIntervalSec),
      ]);
    });
  });
});

describe("packaging/systemd/nixship-agent.service", () => {
  let text: string;
  let unit: Unit;
  beforeAll(async () => {
    text = await readFile(UNIT, "utf8");
    unit = parseUnit(text);
  });

  it("starts the agent with the default config file, restarting it always", () => {
    expect(text).toContain(DEFAULT_AGENT_CONFIG);
    expect(unit.Service?.ExecStart).toEqual([
      `/usr/bin/env nixship agent --config ${DEFAULT_AGENT_CONFIG}`,
    ]);
    expect(unit.Service?.Restart).toEqual(["always"]);
    expect(unit.Service?.RestartSec).toEqual(["5"]);
    expect(unit.Unit?.After).toEqual(["network-online.target"]);
    expect(unit.Unit?.Wants).toEqual(["network-online.target"]);
    expect(unit.Install?.WantedBy).toEqual(["multi-user.target"]);
  });

  it("keeps its state in the default stateDir and reads an optional environment file", () => {
    expect(`/var/lib/${unit.Service?.StateDirectory?.[0]}`).toBe(AGENT_CONFIG_DEFAULTS.stateDir);
    expect(unit.Service?.EnvironmentFile?.[0]).toMatch(/^-\//);
  });

  it("is not restarted or stopped by a NixOS switch, and may still run one", () => {
    // switch-to-configuration reads these from [Service] (nixpkgs' serviceToUnit puts them there).
    expect(unit.Service?.["X-RestartIfChanged"]).toEqual(["false"]);
    expect(unit.Service?.["X-StopIfChanged"]).toEqual(["false"]);
    const service = unit.Service ?? {};
    for (const key of ["ProtectSystem", "ProtectHome", "ReadOnlyPaths", "PrivateDevices"]) {
      expect(service[key], key).toBeUndefined();
    }
    expect(service.MemoryDenyWriteExecute).toBeUndefined(); // Node's JIT
    expect(service.User).toBeUndefined(); // root
  });

  describe("systemd-analyze verify", () => {
    /** Lines of systemd-analyze's complaints about the unit named `nixship-agent.service`. */
    async function complaints(file: string): Promise<{ code: number; lines: string[] }> {
      const r = await run("systemd-analyze", ["verify", file]);
      const lines = r.stderr.split("\n").filter((l) => l.includes("nixship-agent.service"));
      return { code: r.code, lines };
    }

    it("accepts the unit: every key known and parsed, ExecStart executable", async () => {
      // ExecStart is /usr/bin/env, which exists; whether `nixship` is on PATH is a runtime
      // matter that verify does not check.
      expect(await complaints(UNIT)).toEqual({ code: 0, lines: [] });
    });

    it("would notice a mistake (so the check above means something)", async () => {
      const dir = await mkdtemp(join(tmpdir(), "nixship-unit-"));
      try {
        const broken = join(dir, "nixship-agent.service");
        await writeFile(broken, text.replace("Restart=always", "Restart=sometimes\nRestrat=no"));
        const { lines } = await complaints(broken);
        expect(lines.join("\n")).toMatch(/restart specifier.*sometimes/);
        expect(lines.join("\n")).toMatch(/Unknown key 'Restrat'/);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});

describe("docs/agent.md", () => {
  it("has a reference table of exactly the config keys, with the parser's defaults", async () => {
    const rows = configTable(await readFile(DOC, "utf8"));
    expect(rows.map((r) => r.key)).toEqual([...AGENT_CONFIG_KEYS]);
    for (const [key, value] of Object.entries(AGENT_CONFIG_DEFAULTS)) {
      const row = rows.find((r) => r.key === key);
      expect(row?.default, key).toBe(`\`${JSON.stringify(value)}\``);
    }
    for (const row of rows) expect(row.meaning, row.key).toMatch(/\S/);
  });
});

interface ModuleEval {
  readonly args: Record<string, boolean>;
  readonly options: Record<
    string,
    { isOption: boolean; description: string | null; hasDefault: boolean }
  >;
  readonly defaults: Record<string, unknown>;
  readonly enabled: boolean;
  readonly etcPath: string;
  readonly agentJson: string;
  readonly trustedPublicKeys: unknown;
  readonly assertions: readonly { assertion: boolean; message: string }[];
  readonly tmpfiles: { condition: boolean; content?: unknown };
  readonly service: {
    wantedBy: string[];
    after: string[];
    wants: string[];
    startLimitIntervalSec: number;
    restartIfChanged: boolean;
    stopIfChanged: boolean;
    environment: unknown;
    serviceConfig: Record<string, string | number | boolean>;
    stateDirectory: { condition: boolean; content?: string };
    environmentFile: { condition: boolean; content?: string };
  };
}

/**
 * Evaluates the module the way the module system would call it, without nixpkgs: `lib`
 * holds only nixpkgs' own `mkOption` and `mkIf`, copied verbatim (lib/options.nix,
 * lib/modules.nix; mkOption refuses an argument it does not know, as the real one does).
 * Anything else the module reached for would be missing, and `pkgs` throws if touched.
 * `config` is what the module system hands a module: the final values, here each
 * option's declared default unless `overrides` (JSON values), `nixOverrides` (a Nix
 * attribute set, for values JSON cannot carry, such as a path) or the test's required
 * values set it.
 * Option types and merging are not exercised: that needs nixpkgs, which the tests lack.
 */
async function evalModule(
  overrides: Record<string, unknown>,
  nixOverrides = "{ }",
): Promise<ModuleEval> {
  const values = {
    enable: true,
    package: PACKAGE,
    store: "s3://fleet-bucket/prod?region=eu-west-1",
    channel: "prod",
    releaseKeys: [RELEASE_KEY],
    cacheKeys: [CACHE_KEY],
    ...overrides,
  };
  const expr = `
    let
      module = import ${JSON.stringify(MODULE)};
      lib = {${LIB_OPTIONS}
      };
      pkgs = throw "the module touched pkgs outside the service's path";
      result = module { inherit config lib pkgs; };
      options = result.options.services.nixship-agent;
      withDefault = builtins.filter (n: options.\${n} ? default) (builtins.attrNames options);
      defaults = builtins.listToAttrs
        (map (name: { inherit name; value = options.\${name}.default; }) withDefault);
      config = {
        networking.hostName = "web1";
        services.nixship-agent = defaults // builtins.fromJSON ${nixString(JSON.stringify(values))}
          // (${nixOverrides});
      };
      body = result.config.content;
      svc = body.systemd.services.nixship-agent;
      ifOf = v: { inherit (v) condition; } // (if v.condition then { inherit (v) content; } else { });
    in {
      args = builtins.functionArgs module;
      options = builtins.mapAttrs (n: o: {
        isOption = (o._type or null) == "option";
        description = o.description or null;
        hasDefault = o ? default;
      }) options;
      inherit defaults;
      enabled = result.config.condition;
      etcPath = "/etc/" + builtins.head (builtins.attrNames body.environment.etc);
      agentJson = body.environment.etc."nixship/agent.json".text;
      trustedPublicKeys = body.nix.settings.trusted-public-keys;
      assertions = map (a: { inherit (a) assertion message; }) body.assertions;
      tmpfiles = ifOf body.systemd.tmpfiles.rules;
      service = {
        inherit (svc) wantedBy after wants restartIfChanged stopIfChanged environment
          startLimitIntervalSec;
        serviceConfig = removeAttrs svc.serviceConfig [ "StateDirectory" "EnvironmentFile" ];
        stateDirectory = ifOf svc.serviceConfig.StateDirectory;
        environmentFile = ifOf svc.serviceConfig.EnvironmentFile;
      };
    }`;
  return await evalNixJson<ModuleEval>(expr);
}

/** A Nix string literal of `text`. */
function nixString(text: string): string {
  return JSON.stringify(text).replaceAll("${", "\\${");
}

type Unit = Record<string, Record<string, string[]>>;

/** systemd's unit syntax, as much as these files use: sections, keys (repeatable), comments. */
function parseUnit(text: string): Unit {
  const unit: Unit = {};
  let section: Record<string, string[]> | undefined;
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    if (line.endsWith("\\")) throw new Error(`line ${i + 1}: continuation lines are not parsed`);
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header?.[1] !== undefined) {
      unit[header[1]] ??= {};
      section = unit[header[1]];
      continue;
    }
    const eq = line.indexOf("=");
    if (section === undefined || eq <= 0) throw new Error(`line ${i + 1}: not a key=value line`);
    const key = line.slice(0, eq).trim();
    const values = section[key] ?? [];
    values.push(line.slice(eq + 1).trim());
    section[key] = values;
  }
  return unit;
}

/** The rows of the first table under the heading that starts "## Config file reference". */
function configTable(markdown: string): { key: string; default: string; meaning: string }[] {
  const start = markdown.search(/^## Config file reference/m);
  expect(start, "a '## Config file reference' section").toBeGreaterThanOrEqual(0);
  const section = markdown.slice(start).split(/^## /m)[1] ?? "";
  const all = section.split("\n");
  const first = all.findIndex((l) => l.startsWith("|"));
  const end = all.findIndex((l, i) => i > first && !l.startsWith("|"));
  const lines = first === -1 ? [] : all.slice(first, end === -1 ? undefined : end);
  return lines.slice(2).map((line) => {
    const cells = line
      .slice(1, line.endsWith("|") ? -1 : undefined)
      .split("|")
      .map((c) => c.trim());
    const key = /^`([^`]+)`$/.exec(cells[0] ?? "")?.[1] ?? `(not a key: ${cells[0]})`;
    return { key, default: cells[1] ?? "", meaning: cells[2] ?? "" };
  });
}
