// What the cache a deploy serves (--serve-cache) refuses is said in the deploy's own output: a
// NAR swapped, by someone who can write the cache but not sign, for a bomb under its genuine
// signed narinfo is cut at its signed size, the host fails in its realise, and the deploy's
// `cache-refused` event (and its warning line) says which NAR and why. On a lab host, Nix 2.8.
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNarInfo } from "../src/nix/narinfo.js";
import { buildExampleSystems } from "./support/example-systems.js";
import { deployEvents, setExampleSystems, summaryOf } from "./support/lab-deploy.js";
import { zstdBombNar } from "./support/nar-bytes.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

const HOST = "scr1";
let lab: SshLab;
let v2: string;

beforeAll(async () => {
  [lab, { "web-v2": v2 }] = await Promise.all([startSshLab("scr", 1), buildExampleSystems()]);
});
afterAll(async () => {
  await lab?.down();
});

describe("the cache a deploy serves", () => {
  it("reports the NAR it cut at its signed size, and why, as the host fails", async () => {
    await setExampleSystems(lab.fleetFile, { [HOST]: "web-v1" });
    const first = await lab.deploy("--json");
    expect(first.code, first.stderr).toBe(0);
    // The next system pushed, then its toplevel's NAR swapped for 16 MiB of zeros.
    const cache = join(lab.info.dir, "cache");
    const pushed = await lab.nixship([
      "push",
      v2,
      "--to",
      `file://${cache}`,
      "--key",
      join(lab.info.dir, "cache.sec"),
    ]);
    expect(pushed.code, pushed.stderr).toBe(0);
    const hash = v2.slice("/nix/store/".length, "/nix/store/".length + 32);
    const info = parseNarInfo(await readFile(join(cache, `${hash}.narinfo`), "utf8"));
    expect(info.compression).toBe("zstd");
    await writeFile(join(cache, info.url), zstdBombNar(16 * 1024 * 1024));

    await setExampleSystems(lab.fleetFile, { [HOST]: "web-v2" });
    const r = await lab.deploy("--json");
    expect(r.code).toBe(1);
    expect(summaryOf(r)[HOST]).toMatchObject({ status: "failed", phase: "realise" });
    const refused = deployEvents(r).filter((e) => e.type === "cache-refused");
    expect(refused).toEqual([
      expect.objectContaining({
        method: "GET",
        key: expect.stringMatching(new RegExp(`^/${info.url}\\?`)),
        status: 502,
        error: `${info.url} decompresses to more than the ${info.narSize} bytes its signed narinfo says: cut there (a NAR replaced by someone who cannot sign, or a corrupt upload)`,
      }),
    ]);
    // Without --json, a warning line says it.
    const plain = await lab.deploy();
    expect(plain.code).toBe(1);
    expect(plain.stderr).toContain(`warning: the served cache answered GET /${info.url}?`);
  });
});
