// Pinned trust on a real lab host: with NIXSHIP_TRUST_FILE (which the
// host's installed nixship-activate sets; here the script's input sets it, as that wrapper
// would), activate.sh trusts only the file's substituters and keys. The trust a caller passes
// changes nothing, a path already in the store but not signed by a pinned key is not activated
// (without pinning it would be: the hole pinning closes), and the options that would let a
// caller choose what root runs or writes are refused (command checks unless the system
// declares them itself: test/pinned-deploy.test.ts runs one that it does).
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ActivationResult,
  activateArgs,
  confirmArgs,
  parseActivationResult,
  scriptInput,
} from "../src/host/activation.js";
import { shellQuote } from "../src/util/shell-quote.js";
import { nixship, run } from "../support/cli.js";
import { type LabCache, serveLabCache } from "../support/serve.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";

/** The suite on a lab of one host whose Nix is Debian's 2.8, or 2.26 (`lab up --nix current`). */
function pinnedTrust(nix: string, LAB: string, labUpArgs: readonly string[]): void {
  const HOST = `${LAB}1`;
  const TRUST = "/nix/var/nixship-pinned/trust";
  let work: string;
  let labsDir: string;
  let sshConfig: string;
  let systems: Record<ExampleSystem, string>;
  /** The cache the host pins, and another, signed by a key it does not pin. */
  let pinned: LabCache;
  let other: LabCache;
  /** Systems built with nixship-activate, as a pinned host's are (nixosModules.host). */
  let pinnedV1: string;
  let pinnedV2: string;

  async function onHost(
    args: readonly string[],
    variables: Record<string, string> = { NIXSHIP_TRUST_FILE: TRUST },
  ): Promise<{ code: number; result: ActivationResult; stderr: string }> {
    const r = await run(
      "ssh",
      ["-F", sshConfig, HOST, `sh -s -- ${args.map(shellQuote).join(" ")}`],
      {
        input: Buffer.from(scriptInput(variables)),
      },
    );
    return { code: r.code, result: parseActivationResult(r.stdout, HOST), stderr: r.stderr };
  }

  /** Runs a shell command on the host as root (not through activate.sh). */
  async function shell(command: string): Promise<string> {
    const r = await run("ssh", ["-F", sshConfig, HOST, command]);
    expect(r.code, r.stderr).toBe(0);
    return r.stdout.trim();
  }

  async function writeTrust(lines: readonly string[], mode = "644"): Promise<void> {
    const text = lines.map((l) => `${l}\n`).join("");
    await shell(
      `mkdir -p ${shellQuote(TRUST.slice(0, TRUST.lastIndexOf("/")))} && printf %s ${shellQuote(text)} > ${TRUST} && chmod ${mode} ${TRUST}`,
    );
  }

  /** A "system" only the host made (nix-store --add): unsigned, whose switch leaves a mark. */
  async function unsignedSystem(mark: string): Promise<string> {
    return await shell(
      [
        "d=$(mktemp -d)",
        "mkdir -p $d/evil/bin",
        `printf '#!/bin/sh\\ntouch ${mark}\\n' > $d/evil/bin/switch-to-configuration`,
        "chmod +x $d/evil/bin/switch-to-configuration",
        "nix-store --add $d/evil",
      ].join(" && "),
    );
  }

  /** A "system" the host built itself (input-addressed, unsigned), whose switch leaves a mark. */
  async function builtSystem(mark: string): Promise<string> {
    const script = `mkdir -p $out/bin && printf '#!/bin/sh\\ntouch ${mark}\\n' > $out/bin/switch-to-configuration && chmod +x $out/bin/switch-to-configuration`;
    const expr = `derivation { name = "evil-built"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" ${JSON.stringify(script)} ]; PATH = "/usr/bin:/bin"; }`;
    return await shell(
      `NIX_CONFIG='experimental-features = nix-command\nsandbox = false\nbuild-users-group =\nsubstituters =' nix-build --no-out-link -E ${shellQuote(expr)} 2>/dev/null`,
    );
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "nixship-pinned-"));
    labsDir = join(work, "labs");
    systems = await buildExampleSystems();
    pinnedV1 = await pinnedSystem("v1");
    pinnedV2 = await pinnedSystem("v2");
    const up = await nixship(["lab", "up", "1", "--name", LAB, "--json", ...labUpArgs], {
      env: { NIXSHIP_LAB_DIR: labsDir },
    });
    expect(up.code, up.stderr).toBe(0);
    const lab = JSON.parse(up.stdout) as { number: number; files: { sshConfig: string } };
    sshConfig = lab.files.sshConfig;
    const gateway = `10.231.${lab.number}.1`;
    for (const name of ["pinned", "other"]) await mkdir(join(work, name));
    // web-v1 too, signed by the pinned key but built without nixship-activate.
    pinned = await serveLabCache(
      join(work, "pinned"),
      [pinnedV1, systems["web-v1"]],
      gateway,
      "pinned-1",
    );
    other = await serveLabCache(join(work, "other"), [pinnedV2], gateway, "other-1");
  });

  afterAll(async () => {
    await pinned?.server.stop();
    await other?.server.stop();
    await nixship(["lab", "down", "--name", LAB], { env: { NIXSHIP_LAB_DIR: labsDir } });
    await rm(work, { recursive: true, force: true });
  });

  describe(`pinned trust (${nix})`, () => {
    it("activates what a pinned key signed, from the pinned substituter, whatever the caller passes", async () => {
      await writeTrust([`substituter ${pinned.server.url}`, `trusted-key ${pinned.publicKey}`]);
      const r = await onHost(
        activateArgs({
          path: pinnedV1,
          action: "switch",
          // The caller's trust: another substituter and key. Ignored.
          substituters: [other.server.url],
          trustedKeys: [other.publicKey],
          confirmTimeout: 30,
          token: "pinned-ok",
        }),
      );
      expect(r.result, r.stderr).toMatchObject({ ok: true, command: "activate" });
      expect(r.stderr).toContain("the --substituter and --trusted-key given are ignored");
      const confirmed = await onHost(confirmArgs("pinned-ok"));
      expect(confirmed.result).toMatchObject({ ok: true, command: "confirm" });
      expect(await shell("readlink /run/current-system")).toBe(pinnedV1);
    });

    it("refuses a path signed by another key, even when the caller passes that key", async () => {
      // The host can reach the other cache, but pins only the first key.
      await writeTrust([`substituter ${other.server.url}`, `trusted-key ${pinned.publicKey}`]);
      const r = await onHost(
        activateArgs({
          path: pinnedV2,
          action: "switch",
          substituters: [other.server.url],
          trustedKeys: [other.publicKey],
        }),
      );
      expect(r.result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
      expect(r.code).toBe(3);
      expect(
        await shell(
          `nix-store --check-validity ${pinnedV2} 2>/dev/null && echo present || echo absent`,
        ),
      ).toBe("absent");
      expect(await shell("readlink /run/current-system")).toBe(pinnedV1);
    });

    it("takes a path fetched before the keys were rotated once a pinned cache holds the new key's signature", async () => {
      // The host holds pinnedV1 as it fetched it, signed by pinned-1 alone. It now pins other-1.
      await writeTrust([`substituter ${other.server.url}`, `trusted-key ${other.publicKey}`]);
      const refused = await onHost(activateArgs({ path: pinnedV1, action: "test" }));
      expect(refused.result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
      expect((refused.result as { message: string }).message).toBe(
        `${pinnedV1} is not signed by a key this host pins (its closure must be), here or at the pinned substituters`,
      );
      // The rotation's step on the cache: what the host runs signed with the new key.
      const signed = await nixship([
        "push",
        pinnedV1,
        "--to",
        other.url,
        "--key",
        join(work, "other", "cache.sec"),
        "--resign",
      ]);
      expect(signed.code, signed.stderr).toBe(0);
      const taken = await onHost(activateArgs({ path: pinnedV1, action: "test" }));
      expect(taken.result, taken.stderr).toMatchObject({ ok: true, command: "activate" });
      expect(
        await shell(`nix --extra-experimental-features nix-command path-info --sigs ${pinnedV1}`),
      ).toMatch(/other-1:.*pinned-1:|pinned-1:.*other-1:/);
    });

    it("never activates a path in the store that no pinned key signed; unpinned, the same path runs as root", async () => {
      await writeTrust([`substituter ${pinned.server.url}`, `trusted-key ${pinned.publicKey}`]);
      const mark = "/tmp/nixship-pinned-mark";
      await shell(`rm -f ${mark}`);
      const evil = await unsignedSystem(mark);
      const refused = await onHost(activateArgs({ path: evil, action: "test" }));
      expect(refused.result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
      expect((refused.result as { message: string }).message).toContain(
        "is not signed by a key this host pins",
      );
      expect(await shell(`test -e ${mark} && echo made || echo none`)).toBe("none");
      // Without pinning (root's own piped script, as for a host without the module), a path in
      // the store is taken as it is: this is what pinning closes for a non-root deploy user.
      const unpinned = await onHost(activateArgs({ path: evil, action: "test" }), {});
      expect(unpinned.result).toMatchObject({ ok: true, command: "activate" });
      expect(await shell(`test -e ${mark} && echo made || echo none`)).toBe("made");
      await shell(`rm -f ${mark}`);
    });

    it("never activates a path the host built itself (input-addressed, unsigned)", async () => {
      await writeTrust([`substituter ${pinned.server.url}`, `trusted-key ${pinned.publicKey}`]);
      const mark = "/tmp/nixship-pinned-built";
      await shell(`rm -f ${mark}`);
      const built = await builtSystem(mark);
      expect(built).toMatch(/^\/nix\/store\/[a-z0-9]{32}-evil-built$/);
      const refused = await onHost(activateArgs({ path: built, action: "test" }));
      expect(refused.result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
      expect((refused.result as { message: string }).message).toBe(
        `${built} is not signed by a key this host pins (its closure must be), here or at the pinned substituters`,
      );
      expect(await shell(`test -e ${mark} && echo made || echo none`)).toBe("none");
    });

    it("refuses the options that would let a caller choose what root runs or writes", async () => {
      await writeTrust([`substituter ${pinned.server.url}`, `trusted-key ${pinned.publicKey}`]);
      const mark = "/tmp/nixship-pinned-cmd";
      const base = { path: pinnedV1, action: "switch" as const };
      // A command check the system does not declare (web-v1 declares none) is refused once
      // the system is realised and its signature checked, before anything changes.
      for (const args of [
        activateArgs({ ...base, healthChecks: [{ run: `touch ${mark}`, timeout: 30 }] }),
        activateArgs({
          ...base,
          healthChecks: [{ run: `touch ${mark}`, timeout: 30, retry: false }],
        }),
      ]) {
        const r = await onHost(args);
        expect(r.code).toBe(2);
        expect(r.result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
        expect((r.result as { message: string }).message).toBe(
          `the command check 'touch ${mark}' is not one ${pinnedV1} declares in nixship/health-commands: this host's trust is pinned, and only its system's own commands run as root`,
        );
      }
      const cases: [string, readonly string[]][] = [
        ["--profile", [...activateArgs(base), "--profile", "/etc/nixship-owned"]],
        [
          "--host-key",
          [...activateArgs(base), "--secrets", "--host-key", "/etc/nixship-other-key"],
        ],
        ["--profile", ["rollback", "--profile", "/etc/nixship-owned"]],
      ];
      for (const [option, args] of cases) {
        const r = await onHost(args);
        expect(r.code, option).toBe(2);
        expect(r.result, option).toMatchObject({ ok: false, result: "usage" });
        expect((r.result as { message: string }).message, option).toContain(
          `${option} is refused: this host's trust is pinned`,
        );
      }
      expect(await shell(`test -e ${mark} && echo made || echo none`)).toBe("none");
      expect(await shell("test -e /etc/nixship-owned && echo made || echo none")).toBe("none");
    });

    it("never leaves the host unpinned: a signed system without nixship-activate is refused, to activate or to roll back to", async () => {
      await writeTrust([`substituter ${pinned.server.url}`, `trusted-key ${pinned.publicKey}`]);
      const web = systems["web-v1"];
      const why = `${web} has no sw/bin/nixship-activate (nixship's nixosModules.host): this host's trust is pinned, and a system without it would unpin the host; build every system of a pinned host with the module`;
      const refused = await onHost(activateArgs({ path: web, action: "switch" }));
      expect(refused.code).toBe(2);
      expect(refused.result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
      expect((refused.result as { message: string }).message).toBe(why);
      expect(await shell("readlink /run/current-system")).toBe(pinnedV1);
      // As root without pinning (the host before its module), web-v1 runs; then pinnedV1 again,
      // pinned: the generation before it is web-v1's, which a rollback must not go back to.
      const unpinned = await onHost(activateArgs({ path: web, action: "switch" }), {});
      expect(unpinned.result, unpinned.stderr).toMatchObject({ ok: true });
      const again = await onHost(activateArgs({ path: pinnedV1, action: "switch" }));
      expect(again.result, again.stderr).toMatchObject({ ok: true });
      const back = await onHost(["rollback"]);
      expect(back.code).toBe(9);
      const message = (back.result as { message: string }).message;
      expect(message.startsWith("generation ")).toBe(true);
      expect(message).toContain(`: ${why}`);
      expect(await shell("readlink /run/current-system")).toBe(pinnedV1);
    });

    it("refuses a trust file that others may write, or that holds anything else", async () => {
      await writeTrust(
        [`substituter ${pinned.server.url}`, `trusted-key ${pinned.publicKey}`],
        "666",
      );
      const open = await onHost(["status"]);
      expect(open.code).toBe(2);
      expect((open.result as { message: string }).message).toBe(
        `pinned trust: ${TRUST} must be owned by root and writable by root alone`,
      );
      await writeTrust([`substituter ${pinned.server.url}`, "allow everything"]);
      const odd = await onHost(["status"]);
      expect(odd.code).toBe(2);
      expect((odd.result as { message: string }).message).toBe(
        `pinned trust: ${TRUST} line 2: expected 'substituter URL' or 'trusted-key NAME:KEY'`,
      );
      await writeTrust([`substituter ${pinned.server.url}`]);
      const keyless = await onHost(["status"]);
      expect((keyless.result as { message: string }).message).toBe(
        `pinned trust: ${TRUST} names no trusted-key`,
      );
    });
  });
}

/** An example system with nixship-activate in it, as the module installs it (its trust unused here). */
async function pinnedSystem(version: string): Promise<string> {
  const root = new URL("..", import.meta.url).pathname;
  const expr = `import ${root}examples/system.nix {
    system = builtins.currentSystem; name = "pinned-${version}"; version = "pinned-${version}";
    pinned = {
      substituters = [ "http://127.0.0.1:1" ];
      trustedKeys = [ "test-1:gg+Ac3acg1MrhtcaQbc+nJHt6RomHydolRU4aAZWcPo=" ];
      script = ${root}dist/host/activate.sh;
      text = import ${root}packaging/nixos/nixship-activate.nix;
    };
  }`;
  const built = await run("nix-build", ["--no-out-link", "--expr", expr]);
  expect(built.code, built.stderr).toBe(0);
  return built.stdout.trim();
}

pinnedTrust("Debian's Nix 2.8", "ap", []);
pinnedTrust("Nix 2.26", "apc", ["--nix", "current"]);
