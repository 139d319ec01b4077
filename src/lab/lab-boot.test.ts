import { mkdir, mkdtemp, readdir, rename, rm, symlink, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  chooseEntry,
  entryName,
  installEntries,
  parseEntryName,
  setBootCounting,
  startBoot,
} from "./lab-boot.js";

let host: string;
const profiles = () => join(host, "nix", "var", "nix", "profiles");
const entries = async () => (await readdir(join(host, "boot", "loader", "entries"))).sort();
const sys = (n: number) => `/nix/store/${"a".repeat(31)}${n}-example-web-system-v${n}`;

/** Makes generation n of the host's system profile, and points the profile at it. */
async function generation(n: number): Promise<void> {
  await symlink(sys(n), join(profiles(), `system-${n}-link`));
  await unlink(join(profiles(), "system")).catch(() => undefined);
  await symlink(`system-${n}-link`, join(profiles(), "system"));
}

beforeEach(async () => {
  host = await mkdtemp(join(tmpdir(), "nixship-lab-boot-"));
  await mkdir(profiles(), { recursive: true });
});
afterEach(() => rm(host, { recursive: true, force: true }));

describe("entry names", () => {
  it("reads and writes systemd-boot's counters", () => {
    expect(parseEntryName("nixos-generation-5.conf")).toEqual({ generation: 5 });
    expect(parseEntryName("nixos-generation-5+3.conf")).toEqual({
      generation: 5,
      triesLeft: 3,
      triesDone: 0,
    });
    expect(parseEntryName("nixos-generation-12+0-3.conf")).toEqual({
      generation: 12,
      triesLeft: 0,
      triesDone: 3,
    });
    expect(parseEntryName("loader.conf")).toBeUndefined();
    expect(entryName({ generation: 5, triesLeft: 2, triesDone: 1 })).toBe(
      "nixos-generation-5+2-1.conf",
    );
    expect(entryName({ generation: 5, triesLeft: 3 })).toBe("nixos-generation-5+3.conf");
  });
});

describe("the boot loader stand-in", () => {
  it("without counting: one entry per generation, the profile's current one boots", async () => {
    await generation(1);
    await generation(2);
    const boot = await startBoot(host);
    expect(boot).toMatchObject({ entry: { generation: 2, system: sys(2) }, counted: false });
    expect(await entries()).toEqual(["nixos-generation-1.conf", "nixos-generation-2.conf"]);
  });

  it("has nothing to boot on a host that was never deployed", async () => {
    expect(await startBoot(host)).toBeUndefined();
  });

  it("counts tries, then falls back to the newest entry that has some left", async () => {
    await generation(1);
    await setBootCounting(host, 2);
    await generation(2);
    const first = await startBoot(host);
    expect(first).toMatchObject({ entry: { generation: 2 }, counted: true });
    expect(first?.bootedFile).toBe("nixos-generation-2+1-1.conf");
    const second = await startBoot(host);
    expect(second?.bootedFile).toBe("nixos-generation-2+0-2.conf");
    // Tries spent: generation 2 is bad, and the loader boots generation 1 (spending a try of
    // its own: it was installed while the host counted).
    const third = await startBoot(host);
    expect(third).toMatchObject({ entry: { generation: 1 }, counted: true });
    expect(await entries()).toEqual(["nixos-generation-1+1-1.conf", "nixos-generation-2+0-2.conf"]);
  });

  it("keeps a blessed entry good, and drops the entries of generations that are gone", async () => {
    await setBootCounting(host, 3);
    await generation(1);
    await generation(2);
    await installEntries(host);
    // `systemd-bless-boot good` on generation 1: its entry loses its counter.
    const dir = join(host, "boot", "loader", "entries");
    await rename(join(dir, "nixos-generation-1+3.conf"), join(dir, "nixos-generation-1.conf"));
    // Generation 2 is rolled back and removed from the profile.
    await unlink(join(profiles(), "system-2-link"));
    await unlink(join(profiles(), "system"));
    await symlink("system-1-link", join(profiles(), "system"));
    expect((await installEntries(host)).map((e) => e.file)).toEqual(["nixos-generation-1.conf"]);
    expect(await startBoot(host)).toMatchObject({ entry: { generation: 1 }, counted: false });
  });

  it("boots the default anyway when every entry is bad", () => {
    const bad = (generation: number) => ({
      generation,
      file: entryName({ generation, triesLeft: 0, triesDone: 3 }),
      system: sys(generation),
      triesLeft: 0,
      triesDone: 3,
    });
    expect(chooseEntry([bad(2), bad(1)], 2)?.generation).toBe(2);
  });
});
