// A system given by store path that neither this machine's store nor the fleet's cache holds:
// the error names what asked for it and the caller's way out (a rollback's: the hosts' own
// generations), with the real nix asked which paths are valid.
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { narInfoKey } from "../src/cache/layout.js";
import { importMissingSystems } from "../src/cli/given-systems.js";
import type { Fleet } from "../src/fleet/fleet.js";
import { formatPublicKey, generateSecretKey, publicKeyOf } from "../src/nix/keys.js";
import { formatNarInfo } from "../src/nix/narinfo.js";
import { syntheticNar, syntheticPath } from "../support/synthetic-cache.js";

let work: string;
let fleet: Fleet;
const GONE = syntheticPath("given-systems-gone", "nixos-system-web1");
const UNSIGNED = syntheticPath("given-systems-unsigned", "nixos-system-web2");

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-given-"));
  await writeFile(join(work, "nix-cache-info"), "StoreDir: /nix/store\n");
  const key = publicKeyOf(generateSecretKey("given-systems-1"));
  // Only the cache matters here: the rest of a fleet is never read.
  fleet = {
    cache: { url: `file://${work}`, publicKeys: [formatPublicKey(key)] },
  } as unknown as Fleet;
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe("importMissingSystems", () => {
  it("names what asked for a path neither store holds, with the default hint", async () => {
    const err = await importMissingSystems(fleet, [GONE]).catch((e: unknown) => e);
    expect(err).toMatchObject({
      message: expect.stringContaining(
        `${GONE}: this machine's store lacks ${GONE}, and the fleet's cache does not hold it either`,
      ),
      hint: expect.stringContaining("must be in this machine's store, or in the fleet's cache"),
    });
  });

  it("says the caller's way out when it has one", async () => {
    const err = await importMissingSystems(
      fleet,
      [GONE],
      (p) => `rollback of rollout 0123456789ab to ${p}`,
      (p) => `the hosts most likely still hold ${p}`,
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({
      message: expect.stringMatching(
        /^rollback of rollout 0123456789ab to \/nix\/store\/.*the fleet's cache does not hold it either/,
      ),
      hint: `the hosts most likely still hold ${GONE}`,
    });
  });

  it("keeps the fetch's own hint when the cache holds the path but will not give it (unsigned)", async () => {
    const { info, nar } = syntheticNar(UNSIGNED, [], UNSIGNED);
    await mkdir(join(work, "nar"), { recursive: true });
    await writeFile(join(work, info.url), nar);
    await writeFile(join(work, narInfoKey(UNSIGNED)), formatNarInfo(info));
    const err = await importMissingSystems(
      fleet,
      [UNSIGNED],
      (p) => `rollback of rollout 0123456789ab to ${p}`,
      () => "the caller's hint, for a path the cache lacks",
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({
      message: expect.stringContaining("it has no signatures"),
      hint: "check --trusted-key and that the whole closure was pushed",
    });
  });
});
