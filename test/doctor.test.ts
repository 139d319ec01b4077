// `nixship doctor` against the real Nix under chosen nix.conf files, and against a lab's
// fleet: each problem is found and comes with its exact fix; the exit code says whether a
// deploy is blocked.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nixship, runOk } from "../support/cli.js";
import { runReadmeNixConf } from "./support/readme-nix-conf.js";

const LAB = "dr";
let work: string;
let labsDir: string;
let lab: { dir: string; hosts: { name: string; address: string }[] };

interface Found {
  readonly area: string;
  readonly name: string;
  readonly status: string;
  readonly detail: string;
  readonly fix?: string;
}

/**
 * Runs doctor --json with only `conf` as the Nix configuration, from a directory with no fleet
 * (no nixship.json, and no flake whose fleet doctor would look for).
 */
async function doctorWithNixConf(conf: string): Promise<{ code: number; checks: Found[] }> {
  const dir = await mkdtemp(join(work, "nixconf-"));
  await writeFile(join(dir, "nix.conf"), conf);
  const r = await nixship(["doctor", "--json"], {
    cwd: dir,
    env: {
      NIX_CONF_DIR: dir,
      NIX_CONFIG: "",
      NIX_USER_CONF_FILES: join(dir, "none.conf"),
      NIXSHIP_FLEET: undefined,
    },
  });
  return { code: r.code, checks: (JSON.parse(r.stdout) as { checks: Found[] }).checks };
}

const find = (checks: readonly Found[], area: string, name: string) =>
  checks.find((c) => c.area === area && c.name === name);

/**
 * A port on `host` that refuses connections: a privileged one that nothing here serves (and none
 * of fetch's "bad ports", which it refuses before connecting), checked by a connection. (A port just released by a server could be taken by another test's server
 * before the check runs: the suite runs in parallel.)
 */
async function closedPort(host = "127.0.0.1"): Promise<number> {
  for (const port of [2, 3, 4, 5, 6, 8]) {
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect(port, host);
      socket.once("connect", () => {
        socket.destroy();
        resolve(false);
      });
      socket.once("error", (err: NodeJS.ErrnoException) => resolve(err.code === "ECONNREFUSED"));
    });
    if (refused) return port;
  }
  throw new Error(`no port of 2 to 8 refuses connections on ${host}`);
}

/** A loopback server that answers nix-cache-info as a binary cache does, and 404 otherwise. */
async function loopbackCache(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.url === "/nix-cache-info") res.end("StoreDir: /nix/store\nWantMassQuery: 1\n");
    else res.writeHead(404).end();
  });
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-doctor-"));
  labsDir = join(work, "labs");
  const up = await nixship(["lab", "up", "2", "--name", LAB, "--json"], {
    env: { NIXSHIP_LAB_DIR: labsDir },
  });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
});
afterAll(async () => {
  await nixship(["lab", "down", "--name", LAB], { env: { NIXSHIP_LAB_DIR: labsDir } });
  await rm(work, { recursive: true, force: true });
});

describe("the local Nix", () => {
  const GOOD = "experimental-features = nix-command flakes\nsubstituters =\n";

  it("names the missing experimental features and the line that enables them", async () => {
    const { code, checks } = await doctorWithNixConf(
      "build-users-group =\nsandbox = false\nsubstituters =\n",
    );
    expect(code).toBe(1);
    expect(find(checks, "nix", "experimental features")).toEqual({
      area: "nix",
      name: "experimental features",
      status: "fail",
      detail: "nix-command and flakes not enabled",
      fix: "add to /etc/nix/nix.conf (or $NIX_CONFIG): experimental-features = nix-command flakes",
    });
  });

  it("explains a build that fails for want of its build users group", async () => {
    const { code, checks } = await doctorWithNixConf(
      `${GOOD}build-users-group = nixship-no-such-group\nsandbox = false\n`,
    );
    expect(code).toBe(1);
    const build = find(checks, "nix", "build");
    expect(build?.status).toBe("fail");
    expect(build?.detail).toContain("nixship-no-such-group");
    expect(build?.fix).toContain("build-users-group = (empty");
  });

  it("explains a build that fails in the sandbox (no /bin/sh there)", async () => {
    const { code, checks } = await doctorWithNixConf(
      `${GOOD}build-users-group =\nsandbox = true\n`,
    );
    expect(code).toBe(1);
    const build = find(checks, "nix", "build");
    expect(build?.status).toBe("fail");
    expect(build?.detail).toContain("executing '/bin/sh': No such file or directory");
    expect(build?.fix).toContain("sandbox = false");
  });

  it("passes a Nix that builds, and says only the local Nix was checked without a fleet", async () => {
    const { code, checks } = await doctorWithNixConf(
      `${GOOD}build-users-group =\nsandbox = false\n`,
    );
    expect(code).toBe(0);
    expect(checks.map((c) => [c.area, c.name, c.status])).toEqual([
      ["nix", "nix", "ok"],
      ["nix", "experimental features", "ok"],
      ["nix", "build", "ok"],
      ["nix", "substituters", "ok"],
      ["fleet", "fleet file", "skip"],
    ]);
    expect(find(checks, "nix", "substituters")?.detail).toBe(
      "none: builds use only the local store",
    );
  });

  it("warns, with the fix, about a substituter that cannot be reached, and passes one that answers", async () => {
    const refused = `http://127.0.0.1:${await closedPort()}`;
    const cache = await loopbackCache();
    try {
      const { code, checks } = await doctorWithNixConf(
        `${GOOD}build-users-group =\nsandbox = false\nsubstituters = ${cache.url} ${refused}\n`,
      );
      // A warning: builds still work, slowly.
      expect(code, JSON.stringify(checks)).toBe(0);
      expect(checks.filter((c) => c.name.startsWith("substituter"))).toEqual([
        {
          area: "nix",
          name: "substituter",
          status: "warn",
          detail: `${refused} cannot be reached (ECONNREFUSED): every build asks it first, and waits for Nix's retries`,
          fix: "remove it from substituters in /etc/nix/nix.conf (or $NIX_CONFIG); without internet access, turn them all off: substituters =",
        },
      ]);
      const answering = await doctorWithNixConf(
        `${GOOD}build-users-group =\nsandbox = false\nsubstituters = ${cache.url}\n`,
      );
      expect(find(answering.checks, "nix", "substituters")).toMatchObject({
        status: "ok",
        detail: `${cache.url} answers`,
      });
    } finally {
      await new Promise((resolve) => cache.server.close(resolve));
    }
  });

  it("the README's nix.conf passes every check of the local Nix, substituters included", async () => {
    const conf = (await runReadmeNixConf(join(work, "readme-etc-nix"))).trimEnd();
    // Offline, nothing but the local store: checked before doctor runs, so that it never asks
    // cache.nixos.org.
    expect(conf?.split("\n")).toContain("substituters =");
    const { code, checks } = await doctorWithNixConf(`${conf}\n`);
    expect(code).toBe(0);
    expect(checks.filter((c) => c.area === "nix" && c.status !== "ok")).toEqual([]);
    expect(find(checks, "nix", "substituters")?.status).toBe("ok");
  });
});

describe("a lab's fleet", () => {
  it("passes the lab with its own key: keys, cache, ssh and each host", async () => {
    const r = await nixship([
      "doctor",
      "--fleet",
      join(lab.dir, "nixship.json"),
      "--key",
      join(lab.dir, "cache.sec"),
      "--json",
    ]);
    const { ok, checks } = JSON.parse(r.stdout) as { ok: boolean; checks: Found[] };
    expect(checks.filter((c) => c.status === "fail")).toEqual([]);
    expect(r.code).toBe(0);
    expect(ok).toBe(true);
    for (const host of lab.hosts) {
      expect(find(checks, `host ${host.name}`, "ssh")?.status).toBe("ok");
      expect(find(checks, `host ${host.name}`, "nix")?.detail).toMatch(/^nix-store \(Nix\) 2\./);
      expect(find(checks, `host ${host.name}`, "store")?.status).toBe("ok");
    }
    expect(find(checks, "keys", "cache signing key")?.status).toBe("ok");
    expect(find(checks, "cache", "cache")?.status).toBe("ok");
  });

  it("checks each host reaches the cache served by --serve-cache, and names the fix when not", async () => {
    const doctor = (serve: string) =>
      nixship([
        "doctor",
        "--fleet",
        join(lab.dir, "nixship.json"),
        "--key",
        join(lab.dir, "cache.sec"),
        "--serve-cache",
        serve,
        "--json",
      ]);
    const address = await nixship(["lab", "address", "--name", LAB], {
      env: { NIXSHIP_LAB_DIR: labsDir },
    });
    expect(address.code, address.stderr).toBe(0);
    const reachable = await doctor(`${address.stdout.trim()}:0`);
    expect(reachable.code, reachable.stdout).toBe(0);
    const served = (JSON.parse(reachable.stdout) as { checks: Found[] }).checks;
    for (const host of lab.hosts) {
      expect(find(served, `host ${host.name}`, "substituter")).toMatchObject({
        status: "ok",
        detail: expect.stringMatching(
          new RegExp(
            `^reaches the cache served by --serve-cache: http://${address.stdout.trim()}:\\d+$`,
          ),
        ),
      });
    }
    // Loopback: this machine listens, but no host can reach it there.
    const loopback = await doctor("127.0.0.1:0");
    expect(loopback.code).toBe(1);
    const unreached = (JSON.parse(loopback.stdout) as { checks: Found[] }).checks;
    for (const host of lab.hosts) {
      expect(find(unreached, `host ${host.name}`, "substituter")).toMatchObject({
        status: "fail",
        detail: expect.stringMatching(
          /^cannot fetch http:\/\/127\.0\.0\.1:\d+\/nix-cache-info \(the cache served by --serve-cache\): curl: \(7\) /,
        ),
        fix: expect.stringContaining('--serve-cache "$(nixship lab address --name NAME):0"'),
      });
    }
  });

  it("checks each host reaches cache.substituter", async () => {
    const doc = JSON.parse(await readFile(join(lab.dir, "nixship.json"), "utf8")) as {
      cache: Record<string, unknown>;
    };
    const address = (
      await nixship(["lab", "address", "--name", LAB], { env: { NIXSHIP_LAB_DIR: labsDir } })
    ).stdout.trim();
    const fleet = join(lab.dir, "doctor-substituter.json");
    const substituter = `http://${address}:${await closedPort(address)}`;
    await writeFile(fleet, JSON.stringify({ ...doc, cache: { ...doc.cache, substituter } }));
    const r = await nixship(["doctor", "--fleet", fleet, "--json"]);
    expect(r.code).toBe(1);
    const { checks } = JSON.parse(r.stdout) as { checks: Found[] };
    for (const host of lab.hosts) {
      expect(find(checks, `host ${host.name}`, "substituter")).toMatchObject({
        status: "fail",
        detail: expect.stringContaining(
          `cannot fetch ${substituter}/nix-cache-info (cache.substituter): curl: (7)`,
        ),
        fix: expect.stringContaining("make cache.substituter reachable from the hosts"),
      });
    }
  });

  it("fails on a key the fleet does not trust, a missing cache and a changed host key, each with its fix", async () => {
    const other = join(work, "other.sec");
    expect((await nixship(["key", "generate", "--name", "other-1", "--out", other])).code).toBe(0);
    // A copy of the lab's fleet: its cache URL mistyped, and the second host's key replaced.
    const doc = JSON.parse(await readFile(join(lab.dir, "nixship.json"), "utf8")) as {
      cache: { url: string };
      ssh: { knownHosts: string };
    };
    const second = lab.hosts[1] as { name: string; address: string };
    const known = await readFile(doc.ssh.knownHosts, "utf8");
    const keyDir = join(work, "hostkey");
    await mkdir(keyDir);
    await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(keyDir, "k")]);
    const impostor = (await readFile(join(keyDir, "k.pub"), "utf8"))
      .split(" ")
      .slice(0, 2)
      .join(" ");
    const changed = known
      .split("\n")
      .map((line) =>
        line.startsWith(`${second.name},`) ? `${second.name},${second.address} ${impostor}` : line,
      )
      .join("\n");
    expect(changed).not.toBe(known);
    const knownHosts = join(work, "known_hosts");
    await writeFile(knownHosts, changed);
    const fleet = join(lab.dir, "doctor-broken.json");
    await writeFile(
      fleet,
      JSON.stringify({
        ...doc,
        cache: { ...doc.cache, url: `${doc.cache.url}-typo` },
        ssh: { ...doc.ssh, knownHosts },
      }),
    );
    const r = await nixship(["doctor", "--fleet", fleet, "--key", other, "--json"]);
    expect(r.code).toBe(1);
    const { checks } = JSON.parse(r.stdout) as { checks: Found[] };
    expect(find(checks, "keys", "cache signing key")).toMatchObject({
      status: "fail",
      fix: expect.stringContaining("sign with the secret half of a key the fleet trusts"),
    });
    expect(find(checks, "cache", "cache")).toMatchObject({
      status: "fail",
      detail: expect.stringContaining("holds no binary cache"),
      fix: expect.stringContaining("nixship cache init"),
    });
    expect(find(checks, `host ${lab.hosts[0]?.name}`, "ssh")?.status).toBe("ok");
    expect(find(checks, `host ${lab.hosts[1]?.name}`, "ssh")).toMatchObject({
      status: "fail",
      fix: expect.stringContaining(`the host's key is not the one in ${knownHosts}`),
    });
    // Text mode: the same problems, each followed by its fix.
    const text = await nixship(["doctor", "--fleet", fleet, "--key", other]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/FAIL ssh: .*\n\s+fix: the host's key is not the one in/);
    expect(text.stdout).toContain("3 problem(s) block a deploy");
  });
});

describe("a host whose login works but whose sh -s never answers", () => {
  /** Seconds doctor gives a host here ($NIXSHIP_DOCTOR_HOST_TIMEOUT; 20 unset). */
  const HOST_DEADLINE = 10;
  it("fails within the deadline, naming the host and what hung, not 'nothing blocks a deploy'", async () => {
    // ssh as it is, but the remote command runs where `sh` hangs: the login and the login shell
    // answer, the shell a deploy pipes its script to never does.
    const bin = join(work, "hanging-sh-bin");
    await mkdir(bin, { recursive: true });
    const realSsh = (await runOk("sh", ["-c", "command -v ssh"])).trim();
    // A remote command (it has a space) gets the hanging sh; options, a destination, -V and -G
    // pass as they are.
    const script = `#!/bin/bash
args=("$@")
last="\${args[-1]:-}"
if [[ "$last" != *" "* ]]; then exec ${realSsh} "$@"; fi
unset 'args[-1]'
exec ${realSsh} "\${args[@]}" "sh() { sleep 40; }; $last"
`;
    await writeFile(join(bin, "ssh"), script, { mode: 0o755 });
    // doctor's deadline for a host (20 s), shortened: what is checked is that it holds. The
    // text run goes beside the --json one.
    const env = {
      PATH: `${bin}:${process.env.PATH}`,
      NIXSHIP_DOCTOR_HOST_TIMEOUT: String(HOST_DEADLINE),
    };
    const fleetFile = join(lab.dir, "nixship.json");
    const [r, text] = await Promise.all([
      nixship(["doctor", "--fleet", fleetFile, "--json"], { env }),
      nixship(["doctor", "--fleet", fleetFile], { env }),
    ]);
    expect(r.code).toBe(1);
    const { ok, checks } = JSON.parse(r.stdout) as { ok: boolean; checks: Found[] };
    expect(ok).toBe(false);
    for (const host of lab.hosts) {
      expect(find(checks, `host ${host.name}`, "shell")).toEqual({
        area: `host ${host.name}`,
        name: "shell",
        status: "fail",
        detail: `host ${host.name}: the ssh login worked, but 'sh -s' (which runs a deploy's script) did not answer within ${HOST_DEADLINE} s`,
        fix: expect.stringContaining(`sh -s' by hand: it must return at once`),
      });
    }
    expect(text.code).toBe(1);
    expect(text.stdout).not.toContain("nothing blocks a deploy");
    expect(text.stdout).toContain(`did not answer within ${HOST_DEADLINE} s`);
  }, 90_000);
});

describe("agent hosts", () => {
  it("checks the release key against releases.publicKeys, and says once what is wrong with it", async () => {
    const cache = join(work, "agent-cache");
    expect((await nixship(["cache", "init", `file://${cache}`])).code).toBe(0);
    const trustedKey = join(work, "release-a.sec");
    const otherKey = join(work, "release-b.sec");
    const pub = (
      await nixship(["key", "generate", "--name", "rel-a", "--out", trustedKey])
    ).stdout.trim();
    await nixship(["key", "generate", "--name", "rel-b", "--out", otherKey]);
    const fleet = join(work, "agents.json");
    await writeFile(
      fleet,
      JSON.stringify({
        cache: { url: `file://${cache}`, publicKeys: [pub] },
        releases: { channel: "prod", publicKeys: [pub] },
        hosts: {
          ag1: { delivery: "agent", system: "/nix/store/00000000000000000000000000000000-s" },
        },
      }),
    );
    const releaseChecks = async (...extra: string[]) => {
      const r = await nixship(["doctor", "--fleet", fleet, "--json", ...extra], {
        env: { NIXSHIP_RELEASE_KEY: undefined },
      });
      return (JSON.parse(r.stdout) as { checks: Found[] }).checks.filter(
        (c) => c.name === "release key",
      );
    };
    expect(await releaseChecks("--release-key", trustedKey)).toMatchObject([{ status: "ok" }]);
    expect(await releaseChecks("--release-key", otherKey)).toMatchObject([
      { status: "fail", detail: expect.stringContaining("'rel-b' (public key rel-b:") },
    ]);
    expect(await releaseChecks()).toMatchObject([{ status: "warn" }]);
    const missing = await releaseChecks("--release-key", join(work, "nosuch.sec"));
    expect(missing).toHaveLength(1);
    expect(missing[0]).toMatchObject({
      status: "fail",
      detail: `--release-key ${join(work, "nosuch.sec")}: no such file`,
      fix: expect.stringContaining(
        `nixship key generate --name NAME --out ${join(work, "nosuch.sec")}`,
      ),
    });
  });
});

describe("a cache whose endpoint takes connections and never answers", () => {
  it("fails the cache's check within its deadline, naming the cache", async () => {
    const sockets: import("node:net").Socket[] = [];
    const silent = (await import("node:net")).createServer((socket) => {
      sockets.push(socket);
    });
    silent.listen(0, "127.0.0.1");
    await new Promise((resolve) => silent.once("listening", resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const fleet = join(work, "silent-cache.json");
      const url = `s3://fleet-cache?endpoint=http://127.0.0.1:${port}&region=us-east-1`;
      const key = join(work, "silent.sec");
      const pub = (await nixship(["key", "generate", "--name", "silent-1", "--out", key])).stdout;
      await writeFile(
        fleet,
        JSON.stringify({
          cache: { url, publicKeys: [pub.trim()] },
          releases: { channel: "prod", publicKeys: [pub.trim()] },
          hosts: {
            ag1: { delivery: "agent", system: "/nix/store/00000000000000000000000000000000-s" },
          },
        }),
      );
      const started = Date.now();
      const r = await nixship(["doctor", "--fleet", fleet, "--json", "--key", key], {
        env: {
          NIXSHIP_DOCTOR_CACHE_TIMEOUT: "2",
          AWS_ACCESS_KEY_ID: "doctor-test",
          AWS_SECRET_ACCESS_KEY: "doctor-test-secret",
        },
      });
      // Bounded by the 2 s deadline (and doctor's other checks), not the client's minutes.
      expect(Date.now() - started).toBeLessThan(60_000);
      const checks = (JSON.parse(r.stdout) as { checks: Found[] }).checks;
      expect(find(checks, "cache", "cache")).toMatchObject({
        status: "fail",
        detail: `${url} gave no answer within 2 s (doctor's bound for the cache's checks)`,
      });
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  }, 120_000);
});
