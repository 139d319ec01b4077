// What a deploy's derivations make, read by the real Nix from the .drv files of a fresh example
// system: its built closure is inside it (so a build host's honest closure is never refused),
// and the checks refuse an output the derivation does not declare, or a path it never makes.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkClosureDefined,
  checkDeclaredOutputs,
  type DerivationClosure,
  derivationClosure,
} from "../src/cache/derivation-closure.js";
import { queryClosure } from "../src/cache/local-nix.js";
import type { StorePath } from "../src/nix/store-path.js";
import { runOk } from "../support/cli.js";
import { derivationOf, type FreshSystems, freshSystems } from "./support/fresh-systems.js";

const NIX = ["--extra-experimental-features", "nix-command flakes"];
let systems: FreshSystems;
let drv: string;
let out: StorePath;
let made: DerivationClosure;

beforeAll(async () => {
  systems = await freshSystems(["web-made"]);
  const attr = `path:${systems.dir}#packages.x86_64-linux.web-made`;
  drv = await derivationOf(systems.dir, "web-made");
  made = await derivationClosure([drv]);
  const built = await runOk("nix", [...NIX, "build", "--no-link", "--json", attr]);
  out = (JSON.parse(built) as { outputs: { out: StorePath } }[])[0]?.outputs.out as StorePath;
});

afterAll(async () => {
  await systems?.remove();
});

describe("what a deploy's derivations make", () => {
  it("holds the built system's whole closure, and its derivation's one output", async () => {
    const closure = await queryClosure([out]);
    expect(closure.length).toBeGreaterThanOrEqual(3);
    for (const info of closure) expect(made.paths.has(info.path), info.path).toBe(true);
    expect([...(made.outputsOf.get(drv) ?? [])]).toEqual([out]);
    expect(() => checkClosureDefined(closure, made, "ssh-ng://b1")).not.toThrow();
    expect(() => checkDeclaredOutputs(new Map([[drv, out]]), made, "ssh-ng://b1")).not.toThrow();
  });

  it("refuses an output the derivation does not declare: another system the host has", () => {
    const other = "/nix/store/00000000000000000000000000000000-example-web-system-old" as StorePath;
    expect(() => checkDeclaredOutputs(new Map([[drv, other]]), made, "ssh-ng://b1")).toThrow(
      `refused what ssh-ng://b1 built: it answered ${other} for ${drv}, which declares ${out}; nothing of it was signed or copied`,
    );
  });

  it("refuses a closure holding paths no derivation makes, naming the first and counting the rest", async () => {
    const closure = await queryClosure([out]);
    const planted = [
      "/nix/store/11111111111111111111111111111111-planted",
      "/nix/store/22222222222222222222222222222222-planted",
    ].map((path) => ({ path: path as StorePath }));
    let error: unknown;
    try {
      checkClosureDefined([...closure, ...planted], made, "ssh-ng://b1", true);
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({
      code: "build-host-refused",
      message: `refused what ssh-ng://b1 built: its closure holds ${planted[0]?.path} (and 1 other paths), which no derivation this deploy evaluated makes or reads; it came back into this machine's store, where nothing references it now`,
      hint: expect.stringMatching(
        /^nix-store --delete \/nix\/store\/1{32}-planted removes it here; /,
      ),
    });
  });
});
