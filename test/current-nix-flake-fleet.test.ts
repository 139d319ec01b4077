// A fleet written in a flake, read by the current Nix (Debian trixie's 2.26) as by the machine's
// 2.8: one `nix eval` of the `nixship` output gives the hosts, the build takes their systems,
// and Nix's errors (a wrong type, a throw) are named by the fleet's attribute, exit 2.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeCurrentNixRoot, nixshipWithCurrentNix } from "../support/current-nix.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";

let nixRoot: string;
let dir: string;

beforeAll(async () => {
  nixRoot = await makeCurrentNixRoot();
  dir = await mkdtemp(join(tmpdir(), "nixship-flake-fleet-26-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(nixRoot, { recursive: true, force: true });
});

/** The flake's outputs: a `nixship` fleet whose one host has `host` for its attributes. */
async function writeFlake(host: string): Promise<string> {
  await writeFile(
    join(dir, "flake.nix"),
    `{ outputs = { self }: { nixship = { hosts.a = ${host}; }; }; }\n`,
  );
  return `path:${dir}#nixship`;
}

describe("a fleet written in a flake, on Nix 2.26", () => {
  it("builds its hosts' systems", async () => {
    const fleet = await writeFlake(
      `{ address = "192.0.2.1"; tags = [ "web" ]; system = "path:${EXAMPLES_DIR}#web-v1"; }`,
    );
    const r = await nixshipWithCurrentNix(nixRoot, ["build", "--fleet", fleet, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const built = JSON.parse(r.stdout) as { hosts: Record<string, string> };
    expect(Object.keys(built.hosts)).toEqual(["a"]);
    expect(built.hosts.a).toMatch(/^\/nix\/store\/[0-9a-z]{32}-example-web-system-v1$/);
  });

  it("names the attribute of a wrong type, and of a throw, exit 2", async () => {
    const wrong = await writeFlake(
      `{ address = "192.0.2.1"; tags = "db"; system = "path:${EXAMPLES_DIR}#web-v1"; }`,
    );
    const typed = await nixshipWithCurrentNix(nixRoot, ["build", "--fleet", wrong]);
    expect(typed.code).toBe(2);
    // With the line that defines it: Nix 2.26 knows it too.
    expect(typed.stderr).toMatch(
      new RegExp(
        `${join(dir, "flake.nix")}: nixship.hosts.a.tags \\(${join(dir, "flake.nix")}:\\d+\\): must be a list`,
      ),
    );
    const thrown = await nixshipWithCurrentNix(nixRoot, [
      "build",
      "--fleet",
      await writeFlake(`throw "no such host here"`),
    ]);
    expect(thrown.code).toBe(2);
    expect(thrown.stderr).toContain("nixship.hosts.a: no such host here");
  });

  it("names the file, line and column of a syntax error in a file the flake imports (exit 2)", async () => {
    await writeFile(
      join(dir, "flake.nix"),
      "{ outputs = { self }: { nixship = import ./nixship.nix; }; }\n",
    );
    await writeFile(
      join(dir, "nixship.nix"),
      '{\n  hosts.web1 = {\n    address = "10.0.0.1"\n    tags = [ "web" ];\n  };\n}\n',
    );
    const r = await nixshipWithCurrentNix(nixRoot, ["build", "--fleet", `path:${dir}#nixship`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `error: ${join(dir, "nixship.nix")}:4:10: nixship: syntax error, unexpected '=', expecting ';'`,
    );
  });
});
