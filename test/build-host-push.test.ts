// A push from the build host, on a lab of three hosts with the real Nix, sshd and an
// S3 cache (s3rver on the lab's bridge, through the real AWS SDK): dp1 runs a system whose
// sw/bin has nixship (this worktree's, through a wrapper) and has its own S3 credentials, so
// it stores the NARs it built and the deployer only signs and commits the narinfos; the system
// never enters the deployer's store, and dp2 deploys it from the cache. dp3 has no nixship at
// first (the closure comes back, and the deploy says why), then one too old (the same), then
// one that crashes (named as crashing, with its last words, not as too old), then one that
// lies about a NarHash (refused by name, no narinfo written). The hosts run the nixship that
// started the lab as every lab host sees it (HOST_NIXSHIP), so the checkout may be anywhere,
// under /tmp or /root too, which a lab host does not see.
import { randomBytes, randomUUID } from "node:crypto";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { narInfoKey } from "../src/cache/layout.js";
import { HOST_VIEW } from "../src/lab/lab-agents.js";
import type { StorePath } from "../src/nix/store-path.js";
import { openStore } from "../src/store/url.js";
import { generatedKey, NIXSHIP_BIN, run, runOk } from "../support/cli.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { EXAMPLES_DIR } from "./support/example-systems.js";
import { derivationOf } from "./support/fresh-systems.js";
import {
  type DeployEventLine,
  deployEvents,
  labDeployArgs,
  servedBy,
} from "./support/lab-deploy.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;
let s3: S3Server;
let flakeDir: string;
const nonce = randomUUID().slice(0, 8);

/** This checkout's build as a lab host sees it (lab-agents.ts: HOST_VIEW/nixship, HOST_VIEW/node). */
const HOST_NIXSHIP = `${HOST_VIEW}/node ${HOST_VIEW}/nixship/${relative(fileURLToPath(new URL("..", import.meta.url)), NIXSHIP_BIN)}`;
/** This checkout's nixship, as a system's sw/bin would run it. */
const NIXSHIP_WRAPPER = `#!/bin/sh\nexec ${HOST_NIXSHIP} "$@"`;
/**
 * A nixship that pushes the NARs as the real one does, then reports every NarHash as zeros:
 * a build host whose nixship lies.
 */
const LYING_NIXSHIP = `#!/bin/sh
case " $* " in
  *" --nars-only "*) ${HOST_NIXSHIP} "$@" > /tmp/report.json || exit $?
    sed -e 's/"narHash": "sha256:[0-9a-z]*"/"narHash": "sha256:${"0".repeat(52)}"/' /tmp/report.json ;;
  *) exec ${HOST_NIXSHIP} "$@" ;;
esac`;

/**
 * A nixship that pushes as the real one does, then claims as stored by it a path the cache has
 * (its entry in /root/claim.json, its NAR already put in the cache with the host's credentials):
 * a build host whose Nix was altered to record its own content for a shared path.
 */
const CLAIMING_NIXSHIP = `#!/bin/sh
case " $* " in
  *" --nars-only "*) ${HOST_NIXSHIP} "$@" > /tmp/report.json || exit $?
    exec ${process.execPath} -e '
const fs = require("fs");
const r = JSON.parse(fs.readFileSync("/tmp/report.json", "utf8"));
const claim = JSON.parse(fs.readFileSync("/root/claim.json", "utf8"));
r.present = r.present.filter((p) => p !== claim.storePath);
r.nars = r.nars.filter((n) => n.storePath !== claim.storePath).concat([claim]);
fs.writeFileSync("/root/claimed-report.json", JSON.stringify(r));
process.stdout.write(JSON.stringify(r) + "\\n");' ;;
  *) exec ${HOST_NIXSHIP} "$@" ;;
esac`;

const OLD_NIXSHIP = `#!/bin/sh
case "$1" in
  version) echo 0.0.9 ;;
  *) echo "Usage: nixship push INSTALLABLE... --to CACHE_URL --key SECRET_FILE" ;;
esac`;

/** A nixship that cannot start (a package with a file missing): it fails to say its version. */
const CRASHING_NIXSHIP = `#!/bin/sh
echo "node:internal/modules/esm/resolve:275" >&2
echo "Error [ERR_MODULE_NOT_FOUND]: Cannot find module '/opt/nixship/dist/cli/main.js'" >&2
exit 1`;

const SYSTEMS: Record<string, string> = {
  // What runs on the build hosts: a system with nixship in sw/bin.
  "bh-tools": `programs = { nixship = ${JSON.stringify(NIXSHIP_WRAPPER)}; };`,
  "bh-liar": `programs = { nixship = ${nixString(LYING_NIXSHIP)}; };`,
  // A nixship from before push --nars-only: it answers its version, and its push knows none.
  "bh-old": `programs = { nixship = ${nixString(OLD_NIXSHIP)}; };`,
  "bh-claimer": `programs = { nixship = ${nixString(CLAIMING_NIXSHIP)}; };`,
  "bh-crashing": `programs = { nixship = ${nixString(CRASHING_NIXSHIP)}; };`,
  // What the build hosts build (fresh per run: no store has them). web-direct declares a check
  // of its own, which the deployer reads in the build host's store.
  "web-direct": 'checks = { commands = [ { run = "touch /run/direct-checked"; timeout = 5; } ]; };',
  "web-copyback": "",
  "web-lied": "",
  "web-old": "",
  "web-claimed": "",
  "web-crashed": "",
  // Each with a nonce: a web service no store has, which the test plants on the build host.
  "web-planted-push": `nonce = "planted-push-${nonce}";`,
  "web-planted-back": `nonce = "planted-back-${nonce}";`,
};

/** A Nix '' string holding `text` as it is. */
function nixString(text: string): string {
  return `''${text.replaceAll("''", "'''").replaceAll("${", "''${")}''`;
}

beforeAll(async () => {
  lab = await startSshLab("dp", 3);
  s3 = await startS3Server("nixship-direct-push", { address: `10.231.${lab.info.number}.1` });
  flakeDir = await mkdtemp(join(tmpdir(), "nixship-direct-flake-"));
  await cp(join(EXAMPLES_DIR, "system.nix"), join(flakeDir, "system.nix"));
  await cp(join(EXAMPLES_DIR, "web"), join(flakeDir, "web"), { recursive: true });
  const packages = Object.entries(SYSTEMS).map(
    ([name, extra]) =>
      `${name} = import ./system.nix { system = "x86_64-linux"; name = "${name}"; version = "${name}-${nonce}"; ${extra} };`,
  );
  await writeFile(
    join(flakeDir, "flake.nix"),
    `{ outputs = { self }: { packages.x86_64-linux = { ${packages.join(" ")} }; }; }\n`,
  );
  // The fleet's cache is the S3 bucket; the build hosts write it with credentials of their own.
  const init = await lab.nixship(["cache", "init", s3.url]);
  expect(init.code, init.stderr).toBe(0);
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { cache: { url: string } };
  doc.cache.url = s3.url;
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
  for (const host of ["dp1", "dp3"]) {
    const r = await onHost(
      host,
      "umask 077; mkdir -p /root/.aws && cat > /root/.aws/credentials",
      "[default]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n",
    );
    expect(r.code, r.stderr).toBe(0);
  }
  await setSystem("dp1", "bh-tools");
  const tools = await lab.deploy("--on", "dp1");
  expect(tools.code, tools.stderr).toBe(0);
});

afterAll(async () => {
  await lab?.down();
  await s3?.close();
  if (flakeDir) await rm(flakeDir, { recursive: true, force: true });
});

async function setSystem(host: string, system: string): Promise<void> {
  const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
    hosts: Record<string, { system: string }>;
  };
  (doc.hosts[host] as { system: string }).system = `path:${flakeDir}#${system}`;
  await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
}

function onHost(host: string, command: string, input?: string) {
  return run("ssh", ["-F", join(lab.info.dir, "ssh_config"), host, command], {
    ...(input === undefined ? {} : { input: Buffer.from(input) }),
  });
}

const event = (events: DeployEventLine[], type: string) =>
  events.find((e) => e.type === type) as Record<string, unknown> | undefined;

/** The web service `system` references, as the deployer's own derivation of it names it. */
async function shareOf(system: string): Promise<string> {
  const drv = await derivationOf(flakeDir, system);
  const shareDrv = (await runOk("nix-store", ["--query", "--requisites", drv]))
    .split("\n")
    .find((p) => p.endsWith("-example-web-share.drv"));
  expect(shareDrv).toBeDefined();
  return (await runOk("nix-store", ["--query", "--outputs", shareDrv ?? ""])).trim();
}

/**
 * Puts into `builder`'s store, valid, the web service `system` needs (its path from the
 * deployer's own derivation), with content of its own that references a path no derivation
 * makes: a build host's store written by someone else, which the build then uses as it is.
 */
async function plantShare(
  builder: string,
  system: string,
): Promise<{ share: string; planted: string }> {
  const share = await shareOf(system);
  const alphabet = "0123456789abcdfghijklmnpqrsvwxyz";
  const hash = Array.from(randomBytes(32), (b) => alphabet[b % 32]).join("");
  const planted = `/nix/store/${hash}-planted-${nonce}`;
  const r = await onHost(
    builder,
    [
      "set -e",
      `mkdir -p ${planted} ${share}/bin`,
      `echo planted > ${planted}/file`,
      `printf '#!/bin/sh\\nexec cat %s/file\\n' ${planted} > ${share}/bin/example-web`,
      `printf '%s\\n\\n0\\n%s\\n\\n1\\n%s\\n' ${planted} ${share} ${planted} | nix-store --register-validity`,
    ].join("\n"),
  );
  expect(r.code, r.stderr).toBe(0);
  return { share, planted };
}

async function cacheHas(paths: readonly string[]): Promise<boolean[]> {
  const store = await openStore(s3.url);
  try {
    return await Promise.all(
      paths.map(async (p) => (await store.head(narInfoKey(p as StorePath))) !== undefined),
    );
  } finally {
    await store.close();
  }
}

describe("a build host that pushes", () => {
  it("pushes from the build host; the deployer signs; the closure never comes here", async () => {
    await setSystem("dp2", "web-direct");
    const r = await lab.deploy("--on", "dp2", "--build-host", "dp1", "--json");
    expect(r.code, r.stderr).toBe(0);
    const events = deployEvents(r);
    const done = event(events, "build-done") as {
      systems: { path: string }[];
      closures: { way: string; nixship?: string };
    };
    expect(done.closures).toEqual({ way: "from-host", nixship: expect.stringMatching(/^\d+\./) });
    expect(event(events, "push-done")).toMatchObject({ from: "ssh-ng://root@dp1" });
    const path = done.systems[0]?.path ?? "";
    expect(path).toMatch(/-example-web-system-direct$/);

    // Not in the deployer's store, but in dp1's, where it was built.
    const here = await run("nix-store", ["--check-validity", path]);
    expect(here.code).not.toBe(0);
    expect((await onHost("dp1", `nix-store --check-validity ${path}`)).code).toBe(0);
    // Its whole closure is in the cache, signed by the deployer's key (the lab's cache.sec).
    const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
      cache: { publicKeys: string[] };
    };
    const verify = await lab.nixship([
      "verify",
      "--cache",
      s3.url,
      "--trusted-key",
      fleet.cache.publicKeys[0] ?? "",
      path,
      "--json",
    ]);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ problems: [] });
    // dp2 got it from the cache, and runs it; the check it declares (read on dp1) ran there.
    expect(await servedBy(lab.info, "dp2")).toBe("web-direct");
    expect((await onHost("dp2", "test -e /run/direct-checked")).code).toBe(0);
  });

  it("doctor says which way a build host's closures reach the cache", async () => {
    const doctor = async (host: string) => {
      const doc = JSON.parse(await readFile(lab.fleetFile, "utf8")) as { build?: object };
      doc.build = { host };
      await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
      const r = await lab.nixship(["doctor", "--fleet", lab.fleetFile, "--on", "dp2", "--json"]);
      delete doc.build;
      await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
      const checks = (JSON.parse(r.stdout) as { checks: Record<string, string>[] }).checks;
      return checks.find((c) => c.area === `builder ssh-ng://root@${host}` && c.name === "push");
    };
    expect(await doctor("dp1")).toMatchObject({
      status: "ok",
      detail: expect.stringMatching(
        /^nixship 0\.\d+\.\d+ \(\/run\/current-system\/sw\/bin\/nixship\) pushes the NARs from there; the deployer signs$/,
      ),
    });
    expect(await doctor("dp3")).toMatchObject({
      status: "ok",
      detail:
        "closures are copied back to the deployer: nixship is not installed on ssh-ng://root@dp3",
    });
  });

  it("a build host without nixship: the closure is copied back, and the deploy says why", async () => {
    await setSystem("dp2", "web-copyback");
    const r = await lab.deploy("--on", "dp2", "--build-host", "dp3");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      /built 1 system in .* on ssh-ng:\/\/root@dp3; copied back to the deployer for the push \(nixship is not installed on ssh-ng:\/\/root@dp3\)/,
    );
    expect(r.stderr).not.toContain("pushed from");
    expect(await servedBy(lab.info, "dp2")).toBe("web-copyback");
  });

  it("a build host whose nixship is too old: the closure is copied back, and the deploy says so", async () => {
    await setSystem("dp3", "bh-old");
    const old = await lab.deploy("--on", "dp3");
    expect(old.code, old.stderr).toBe(0);
    await setSystem("dp2", "web-old");
    const r = await lab.deploy("--on", "dp2", "--build-host", "dp3");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      "; copied back to the deployer for the push (nixship on ssh-ng://root@dp3 (/run/current-system/sw/bin/nixship 0.0.9) is too old to push NARs only)",
    );
    expect(await servedBy(lab.info, "dp2")).toBe("web-old");
  });

  it("a build host whose nixship crashes: the closure is copied back, and the deploy says it crashed", async () => {
    await setSystem("dp3", "bh-crashing");
    const crashing = await lab.deploy("--on", "dp3");
    expect(crashing.code, crashing.stderr).toBe(0);
    await setSystem("dp2", "web-crashed");
    const r = await lab.deploy("--on", "dp2", "--build-host", "dp3");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      "; copied back to the deployer for the push (nixship on ssh-ng://root@dp3 (/run/current-system/sw/bin/nixship) crashed (exit 1): Error [ERR_MODULE_NOT_FOUND]: Cannot find module '/opt/nixship/dist/cli/main.js')",
    );
    expect(r.stderr).not.toContain("too old");
    expect(await servedBy(lab.info, "dp2")).toBe("web-crashed");
  });

  it("a build host whose store holds a dependency that references a path no derivation of the deploy makes is refused, pushing or copying back, before anything is signed or copied", async () => {
    const before = await servedBy(lab.info, "dp2");
    // dp1 pushes (its nixship); dp3's crashes (the test before), so its closures come back.
    for (const [builder, system] of [
      ["dp1", "web-planted-push"],
      ["dp3", "web-planted-back"],
    ] as const) {
      const { share, planted } = await plantShare(builder, system);
      await setSystem("dp2", system);
      const r = await lab.deploy("--on", "dp2", "--build-host", builder);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toContain(
        `error: refused what ssh-ng://root@${builder} built: its closure holds ${planted}, which no derivation this deploy evaluated makes or reads; nothing of it was signed or copied`,
      );
      expect(await cacheHas([planted, share])).toEqual([false, false]);
      expect((await run("nix-store", ["--check-validity", planted])).code).not.toBe(0);
      expect(await servedBy(lab.info, "dp2")).toBe(before);
    }
  });

  it("a build host whose nixship lies about a NarHash is refused by name, before any narinfo", async () => {
    const before = await servedBy(lab.info, "dp2");
    await setSystem("dp3", "bh-liar");
    const liar = await lab.deploy("--on", "dp3");
    expect(liar.code, liar.stderr).toBe(0);
    await setSystem("dp2", "web-lied");
    const r = await lab.deploy("--on", "dp2", "--build-host", "dp3");
    expect(r.code).toBe(1);
    const refused = r.stderr.match(
      /error: refused the push from ssh-ng:\/\/root@dp3: (\/nix\/store\/\S+) was reported with NarHash sha256:0{52}, but its Nix records sha256:[0-9a-z]{52}; no narinfo was written/,
    );
    expect(refused, r.stderr).not.toBeNull();
    // The NARs are there (the liar stored them), but none of the paths it built has a narinfo.
    const built = await onHost(
      "dp3",
      `nix-store -qR $(nix-store -q --outputs $(ls -d /nix/store/*-example-web-system-lied.drv))`,
    );
    const paths = built.stdout.trim().split("\n").filter(Boolean);
    expect(paths).toContain(refused?.[1]);
    const fresh = paths.filter((p) => p.includes("-lied"));
    expect(fresh.length).toBeGreaterThanOrEqual(2);
    expect(await cacheHas(fresh)).toEqual(fresh.map(() => false));
    expect(await servedBy(lab.info, "dp2")).toBe(before);
  });

  it("a build host that claims a shared path the cache has, with a NAR of its own, gets nothing re-signed", async () => {
    await setSystem("dp3", "bh-claimer");
    const claimer = await lab.deploy("--on", "dp3");
    expect(claimer.code, claimer.stderr).toBe(0);
    // The shared path every web system without a nonce references: in dp3's store, and in the
    // cache, signed, since the first deploy.
    const share = await shareOf("web-claimed");
    expect((await onHost("dp3", `nix-store --check-validity ${share}`)).code).toBe(0);
    expect(await cacheHas([share])).toEqual([true]);
    const cache = await openStore(s3.url);
    const narinfo = async () => {
      const got = await cache.get(narInfoKey(share as StorePath));
      const chunks: Buffer[] = [];
      for await (const c of got?.body ?? []) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString("utf8");
    };
    try {
      const before = await narinfo();
      // dp3's root gives the path content of its own, and its Nix records it; its own nixship
      // stores that NAR (in a directory, then put in the bucket with the host's credentials).
      const altered = await onHost(
        "dp3",
        [
          `chmod u+w ${share} && echo attacker > ${share}/forged`,
          `printf '%s\\n\\n0\\n' ${share} | nix-store --register-validity --reregister`,
          `rm -rf /tmp/claim && ${HOST_NIXSHIP} cache init file:///tmp/claim`,
          `${HOST_NIXSHIP} push --nars-only --json --compression none --to file:///tmp/claim ${share} > /tmp/claim.json`,
        ].join(" && "),
      );
      expect(altered.code, altered.stderr).toBe(0);
      const claim = (
        JSON.parse((await onHost("dp3", "cat /tmp/claim.json")).stdout) as {
          nars: { storePath: string; url: string }[];
        }
      ).nars[0];
      expect(claim?.storePath).toBe(share);
      const nar = await onHost("dp3", `base64 -w0 /tmp/claim/${claim?.url}`);
      await cache.put(claim?.url ?? "", Buffer.from(nar.stdout, "base64"));
      expect((await onHost("dp3", "cat > /root/claim.json", JSON.stringify(claim))).code).toBe(0);

      await setSystem("dp2", "web-claimed");
      const r = await lab.deploy("--on", "dp2", "--build-host", "dp3", "--json");
      expect(r.code, r.stderr).toBe(0);
      // The claim reached the deployer: the report it read named the shared path as stored.
      const report = JSON.parse((await onHost("dp3", "cat /root/claimed-report.json")).stdout) as {
        nars: { storePath: string }[];
        present: string[];
      };
      expect(report.nars.map((n) => n.storePath)).toContain(share);
      expect(report.present).not.toContain(share);
      // The cache's narinfo is the one it had, and dp2 runs the system built on dp3.
      expect(await narinfo()).toBe(before);
      expect(await servedBy(lab.info, "dp2")).toBe("web-claimed");
      const fleet = JSON.parse(await readFile(lab.fleetFile, "utf8")) as {
        cache: { publicKeys: string[] };
      };
      const verify = await lab.nixship([
        "verify",
        "--cache",
        s3.url,
        "--trusted-key",
        fleet.cache.publicKeys[0] ?? "",
        share,
        "--json",
      ]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    } finally {
      await cache.close();
    }
  });

  it("after the fleet's key is rotated, signs again what the cache holds of a system the build host pushed before", async () => {
    // docs/keys.md: a new key, and the fleet trusts it alone (the old one dropped). web-direct
    // is in the cache since the first test, signed by the old key alone; the build host dp1
    // still has it, so its push commits nothing new.
    const before = await readFile(lab.fleetFile, "utf8");
    // (Not in the flake's directory: nixship refuses a key that Nix would copy into the store.)
    const keys = await mkdtemp(join(tmpdir(), "nixship-rotated-key-"));
    const rotated = await generatedKey(keys, "cache-rotated");
    const doc = JSON.parse(before) as { cache: { publicKeys: string[] } };
    doc.cache.publicKeys = [rotated.publicKey];
    await writeFile(lab.fleetFile, JSON.stringify(doc, null, 2));
    try {
      await setSystem("dp2", "web-direct");
      const r = await lab.nixship(
        labDeployArgs(
          lab.info,
          lab.fleetFile,
          rotated.file,
          "--on",
          "dp2",
          "--build-host",
          "dp1",
          "--json",
        ),
      );
      expect(r.code, r.stderr).toBe(0);
      const events = deployEvents(r);
      expect(event(events, "push-done")).toMatchObject({
        from: "ssh-ng://root@dp1",
        pushed: 0,
        resigned: expect.any(Number),
      });
      // dp2, which trusts the new key alone, got it from the cache and runs it.
      expect(await servedBy(lab.info, "dp2")).toBe("web-direct");
      const path = (event(events, "build-done") as { systems: { path: string }[] }).systems[0]
        ?.path as string;
      const verify = await lab.nixship([
        "verify",
        "--cache",
        s3.url,
        "--trusted-key",
        rotated.publicKey,
        path,
        "--json",
      ]);
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    } finally {
      await writeFile(lab.fleetFile, before);
      await rm(keys, { recursive: true, force: true });
    }
  });
});
