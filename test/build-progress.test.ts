// Builds say what they do: a derivation that builds for 10 s is named on
// stderr while it builds, also on a pipe, and a failed build's last log lines are in its
// error, from Nix's internal-json log, with Debian's Nix 2.8 and with the current Nix (2.26);
// a failed derivation counts as one of the whole, not as built.
import { randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CliRun, nixship } from "../support/cli.js";
import { makeCurrentNixRoot, nixshipWithCurrentNix } from "../support/current-nix.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";

let work: string;
let fleet: string;
let currentRoot: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-build-progress-"));
  // Each run's derivations are new (a nonce), so they build, whatever the store holds.
  const nonce = randomUUID().slice(0, 8);
  const drv = (name: string, script: string) =>
    `${name} = derivation { name = "${name}-${nonce}"; system = "x86_64-linux"; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; };`;
  await writeFile(
    join(work, "flake.nix"),
    `{ outputs = { self }: { packages.x86_64-linux = {
      ${drv("slow", "echo starting; /bin/sleep 10; echo done > $out")}
      ${drv("failing", "echo first words; echo the reason it fails; exit 3")}
    }; }; }\n`,
  );
  fleet = join(work, "fleet.json");
  await writeFile(
    fleet,
    JSON.stringify({
      hosts: {
        slow: { address: "192.0.2.1", system: `path:${work}#slow` },
        failing: { address: "192.0.2.2", system: `path:${work}#failing` },
      },
    }),
  );
  currentRoot = await makeCurrentNixRoot();
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  if (currentRoot) await rm(currentRoot, { recursive: true, force: true });
});

const env = { NIX_CONFIG: TEST_NIX_CONFIG };

const nixes: [string, (args: string[]) => Promise<CliRun>][] = [
  ["Nix 2.8", (args) => nixship(args, { env })],
  ["the current Nix", (args) => nixshipWithCurrentNix(currentRoot, args, { env })],
];

describe.each(nixes)("nixship build with %s", (_, run) => {
  it("names a derivation on stderr while it builds, on a pipe", async () => {
    const r = await run(["build", "--fleet", fleet, "--on", "slow"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^ {2}building slow-[0-9a-f]{8} \(\d+(\.\d+)?s\)/m);
    expect(r.stdout).toMatch(/-slow-[0-9a-f]{8}\tslow\n/);
  }, 120_000);

  it("puts a failed build's last log lines in its error", async () => {
    const r = await run(["build", "--fleet", fleet, "--on", "failing"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/builder for '[^']*-failing-[0-9a-f]{8}\.drv' failed/);
    expect(r.stderr).toMatch(/> the reason it fails/);
    expect(r.stderr).not.toMatch(/@nix \{/);
    // Nix counts the failed derivation out of those expected: it is one of one, not built.
    expect(r.stderr).toContain("  0 of 1 derivations built, 1 failed\n");
    expect(r.stderr).not.toMatch(/1 of 1 derivations? built/);
  }, 120_000);
});
