// A host's system that Nix cannot evaluate (a throw, a type error), with the real Nix 2.8 and
// the current 2.26: the error names the hosts whose system it is, as the fleet names them, the
// flake output, and the file, line and column in the directory the user edits, not in Nix's
// copy of the flake. The other hosts' systems are not what failed.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, generatedKey, nixship } from "../support/cli.js";
import { makeCurrentNixRoot, nixshipWithCurrentNix } from "../support/current-nix.js";
import { writeFleetFlake } from "./support/fleet-flake.js";

const KEY = "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=";

let dir: string;
let keys: string;
let keyFile: string;
let nixRoot: string;

/**
 * The flake's systems: one that evaluates and builds, one that throws, one with a type error,
 * one whose builder fails, one that needs a derivation that fails.
 */
const FLAKE = `{
  outputs = { self }: let
    mk = name: extra: derivation ({ inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "echo > $out" ]; } // extra);
  in {
    packages.\${builtins.currentSystem} = {
      good = mk "good" { };
      thrown = mk "thrown" { role = throw "the db system is not decided"; };
      typed = mk "typed" { port = 80 + "80"; };
      # Builds that fail: its own builder, and one it needs.
      fails = mk "fails" { args = [ "-c" "echo the fails builder gives up; exit 3" ]; };
      deep = mk "deep" { dep = mk "dep" { args = [ "-c" "exit 4" ]; }; };
      # Of this run alone (its directory in it): no store holds it before this test builds it.
      fresh = mk "fresh" { run = "DIR"; };
    };
  };
}
`;

/** A fleet file whose hosts db and db2 run `.#SYSTEM`, and web the good one. */
async function fleetFor(system: string): Promise<string> {
  const file = join(dir, `fleet-${system}.json`);
  const hosts = {
    web: { system: ".#good", address: "10.0.0.1" },
    db: { system: `.#${system}`, address: "10.0.0.2" },
    db2: { system: `.#${system}`, address: "10.0.0.3" },
  };
  const cache = { url: `file://${join(dir, "cache")}`, publicKeys: [KEY] };
  await writeFile(file, JSON.stringify({ cache, hosts }));
  return file;
}

/** The line and column of `text` in the flake (Nix names the operand it could not add): `LINE:COLUMN`. */
async function placeOf(text: string): Promise<string> {
  const lines = (await readFile(join(dir, "flake.nix"), "utf8")).split("\n");
  const line = lines.findIndex((l) => l.includes(text));
  return `${line + 1}:${(lines[line] as string).indexOf(text) + 1}`;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nixship-system-eval-"));
  await writeFile(join(dir, "flake.nix"), FLAKE.replace("DIR", dir));
  // The key outside the flake's directory, which Nix copies whole into the store.
  keys = await mkdtemp(join(tmpdir(), "nixship-system-eval-keys-"));
  keyFile = (await generatedKey(keys, "push")).file;
  nixRoot = await makeCurrentNixRoot();
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(keys, { recursive: true, force: true });
  await rm(nixRoot, { recursive: true, force: true });
});

const VERSIONS: [string, (args: string[]) => Promise<CliRun>][] = [
  ["Nix 2.8", (args) => nixship(args)],
  ["Nix 2.26", (args) => nixshipWithCurrentNix(nixRoot, args)],
];

describe.each(VERSIONS)("a system that does not evaluate, with %s", (_, nixshipWith) => {
  it("names the hosts whose system throws, and the flake output", async () => {
    const r = await nixshipWith(["build", "--fleet", await fleetFor("thrown")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error: hosts.db.system, hosts.db2.system: path:${dir}#thrown: the db system is not decided`,
    );
    expect(r.stderr).not.toContain("hosts.web.system");
    expect(r.stderr).not.toContain("--show-trace");
  });

  it("names the file, line and column of a type error in the flake the user edits", async () => {
    const r = await nixshipWith(["build", "--fleet", await fleetFor("typed")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `error: hosts\\.db\\.system, hosts\\.db2\\.system: path:${dir}#typed \\(${join(dir, "flake.nix")}:${await placeOf('"80"')}\\): cannot add a string to an integer`,
      ),
    );
    expect(r.stderr).not.toContain("/nix/store/");
  });

  it("names push's argument whose system fails", async () => {
    const r = await nixshipWith([
      "push",
      "--key",
      keyFile,
      "--to",
      `file://${join(dir, "push-cache")}`,
      `path:${dir}#good`,
      `path:${dir}#thrown`,
    ]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(
      `error: 'path:${dir}#thrown': path:${dir}#thrown: the db system is not decided`,
    );
  });
});

describe.each(VERSIONS)("systems that do not build, with %s", (_, nixshipWith) => {
  it("names the hosts whose systems did not build, and builds every other one", async () => {
    const file = join(dir, "fleet-builds.json");
    const cache = { url: `file://${join(dir, "cache")}`, publicKeys: [KEY] };
    const hosts = {
      web: { system: ".#fresh", address: "10.0.0.1" },
      db: { system: ".#fails", address: "10.0.0.2" },
      db2: { system: ".#deep", address: "10.0.0.3" },
    };
    await writeFile(file, JSON.stringify({ cache, hosts }));
    const r = await nixshipWith(["build", "--fleet", file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      "error: hosts.db.system, hosts.db2.system: did not build (each failed, or something it needs did; every other system built)",
    );
    // The build kept going: the system that builds was built all the same, and building it
    // again builds nothing.
    expect(r.stderr).toMatch(/building '\/nix\/store\/[a-z0-9]{32}-fresh\.drv'/);
    const again = await nixshipWith(["build", "--fleet", file, "--on", "web", "--json"]);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/derivations? built/);
  });
});

describe("a fleet written in the flake whose host's configuration does not evaluate", () => {
  it("names the host's system attribute", async () => {
    const flake = await mkdtemp(join(dir, "fleet-flake-"));
    await writeFleetFlake(
      flake,
      `nixosConfigurations.web1 = nixosSystem {
        toplevel = throw "web1 has no toplevel yet";
        modules = [ deployment { nixship.deployment = { address = "10.0.0.1"; }; } ];
      };
      nixosConfigurations.web2 = nixosSystem {
        toplevel = examples.web-v1;
        modules = [ deployment { nixship.deployment = { address = "10.0.0.2"; }; } ];
      };
      nixship = fleetLib.fleetFromConfigurations {
        configurations = self.nixosConfigurations;
        cache = { url = "file://${join(dir, "cache")}"; publicKeys = [ "${KEY}" ]; };
      };`,
    );
    const r = await nixship(["build", "--fleet", `path:${flake}#nixship`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `error: hosts.web1.system: path:${flake}#nixship.hosts.web1.system: web1 has no toplevel yet`,
    );
  });
});
