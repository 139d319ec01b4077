// A build nixship starts on a local Nix that lacks a setting its builds need (no nix.conf on
// Debian: the sandbox on, build users of a group that does not exist) fails with the line to
// add, the one `doctor` names, in the error's hint; and an interrupted build stops Nix and its
// builder.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildDerivations } from "../src/cache/nix-build.js";
import { runOk } from "../support/cli.js";
import { TEST_NIX_CONFIG } from "../support/nix-config.js";
import { processAlive } from "./support/process-alive.js";

const saved = process.env.NIX_CONFIG;
afterEach(() => {
  process.env.NIX_CONFIG = saved;
});

/** A derivation built as the example systems are (builder /bin/sh, no nixpkgs), new each run. */
async function freshDerivation(script = "echo ok > $out"): Promise<string> {
  const nonce = `${Date.now()}-${process.pid}-${Math.random()}`;
  const expr = `derivation { name = "nixship-settings-probe"; nonce = "${nonce}"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; }`;
  return (await runOk("nix-instantiate", ["--expr", expr])).trim();
}

/** The settings of a Nix with no nix.conf but the new CLI, with `extra` after them. */
const withSettings = (extra: string) =>
  `experimental-features = nix-command flakes\nsubstituters =\n${extra}`;

describe("a local build that lacks a Nix setting", () => {
  it("in the sandbox, where /bin/sh does not exist: names sandbox = false", async () => {
    const drv = await freshDerivation();
    process.env.NIX_CONFIG = withSettings("build-users-group =\nsandbox = true\n");
    const failed = await buildDerivations([drv]).then(
      () => undefined,
      (err: unknown) => err as { message: string; hint?: string },
    );
    expect(failed?.message).toContain("executing '/bin/sh': No such file or directory");
    expect(failed?.hint).toBe(
      "add to /etc/nix/nix.conf (or $NIX_CONFIG): sandbox = false (the sandbox has no /bin/sh for systems built without nixpkgs)",
    );
  });

  it("for want of its build users group: names build-users-group and the group", async () => {
    const drv = await freshDerivation();
    process.env.NIX_CONFIG = withSettings(
      "build-users-group = nixship-no-such-group\nsandbox = false\n",
    );
    const failed = await buildDerivations([drv]).then(
      () => undefined,
      (err: unknown) => err as { message: string; hint?: string },
    );
    expect(failed?.hint).toContain("build-users-group = (empty: build as the calling user)");
    expect(failed?.hint).toContain("'nixship-no-such-group' group");
  });

  it("builds with the settings it names", async () => {
    const drv = await freshDerivation();
    process.env.NIX_CONFIG = TEST_NIX_CONFIG;
    const built = await buildDerivations([drv]);
    expect(built.byDrv.get(drv)).toMatch(/^\/nix\/store\/[a-z0-9]{32}-nixship-settings-probe$/);
  });
});

describe("an interrupted build", () => {
  it("stops Nix and the builder it started, where only nixship got the signal", async () => {
    const work = await mkdtemp(join(tmpdir(), "nixship-build-stop-"));
    try {
      const pidFile = join(work, "builder.pid");
      // Outside the sandbox (sandbox = false) the builder can say where it is.
      const drv = await freshDerivation(`echo $$ > ${pidFile}; exec /bin/sleep 120`);
      process.env.NIX_CONFIG = TEST_NIX_CONFIG;
      const stop = new AbortController();
      const build = buildDerivations([drv], {}, {}, { signal: stop.signal }).then(
        () => "built",
        (err: unknown) => (err as Error).message,
      );
      const pid = Number(await waitFor(() => readFile(pidFile, "utf8").catch(() => undefined)));
      stop.abort();
      expect(await build).toMatch(/^'nix .*build.*' was stopped: interrupted$/);
      // The builder goes with Nix, rather than building on for two minutes.
      expect(await waitFor(async () => (processAlive(pid) ? undefined : "gone"))).toBe("gone");
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});

/** What `probe` gives once it gives something, asked every 100 ms for at most 30 s. */
async function waitFor<T>(probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const value = await probe();
    if (value !== undefined && value !== "") return value;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("waited 30 s in vain");
}
