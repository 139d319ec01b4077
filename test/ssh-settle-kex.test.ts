// The key exchange of settling logins (src/delivery/ssh-settle-kex.ts), against a real sshd on
// a lab host with the real ssh client: what `ssh -v` says was negotiated for a settling login,
// a shared one, and a settling one when the operator's ssh_config names KexAlgorithms.
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sshActivationTransport } from "../src/delivery/ssh.js";
import { sshSettings } from "../src/delivery/ssh-host-key.js";
import {
  SETTLING_KEX,
  settlingTarget,
  sshDefaultKexAlgorithms,
} from "../src/delivery/ssh-settle-kex.js";
import { type SshTarget, sshArgs } from "../src/delivery/ssh-transport.js";
import { run } from "../support/cli.js";
import { type SshLab, startSshLab } from "./support/ssh-lab.js";

let lab: SshLab;

beforeAll(async () => {
  lab = await startSshLab("kex", 1);
}, 120_000);

afterAll(async () => {
  await lab?.down();
});

function targetWith(configFile: string): SshTarget {
  return {
    name: "kex1",
    destination: "kex1",
    user: undefined,
    configFile,
    knownHosts: join(lab.info.dir, "known_hosts"),
  };
}

/** The key exchange ssh negotiated for a login with `args` (from `ssh -v`). */
async function negotiated(args: readonly string[]): Promise<string> {
  const destination = args.at(-1) as string;
  const r = await run("ssh", ["-v", ...args.slice(0, -1), destination, "true"]);
  expect(r.code, r.stderr).toBe(0);
  const line = r.stderr.split("\n").find((l) => l.includes("kex: algorithm:"));
  expect(line, r.stderr).toBeDefined();
  return (line as string).split("kex: algorithm:")[1]?.trim() as string;
}

describe("settling logins' key exchange", () => {
  it("this machine's ssh defaults to sntrup761x25519 (OpenSSH 9.0-9.8), the case it is for", async () => {
    expect((await sshDefaultKexAlgorithms())?.split(",")[0]).toMatch(/^sntrup761x25519/);
  });

  it("a settling login negotiates curve25519-sha256, a shared login ssh's default", async () => {
    const base = targetWith(join(lab.info.dir, "ssh_config"));
    const settling = await settlingTarget(base, await sshSettings(base));
    expect(settling.settlingKex?.split(",")[0]).toBe(SETTLING_KEX);
    expect(await negotiated(sshArgs(settling, { fresh: true }))).toBe(SETTLING_KEX);
    expect(await negotiated(sshArgs(base, { fresh: true }))).toMatch(/^sntrup761x25519/);
  });

  it("keeps the operator's KexAlgorithms from ssh_config for every login", async () => {
    const config = join(lab.info.dir, "ssh_config_kex");
    const lines = await readFile(join(lab.info.dir, "ssh_config"), "utf8");
    await writeFile(
      config,
      `KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256\n${lines}`,
    );
    const base = targetWith(config);
    const settling = await settlingTarget(base, await sshSettings(base));
    expect(settling.settlingKex).toBeUndefined();
    expect(await negotiated(sshArgs(settling, { fresh: true }))).toBe(
      "sntrup761x25519-sha512@openssh.com",
    );
  });
});

describe("the ssh activation transport", () => {
  it("after its preflight, settles over a login offering curve25519-sha256 first, and runs the rest over the shared one as ssh is set", async () => {
    // A recording ssh on PATH: each command line it was given, then the real ssh.
    const bin = join(lab.info.dir, "recording-bin");
    const log = join(bin, "ssh-args.log");
    await mkdir(bin, { recursive: true });
    await writeFile(join(bin, "ssh"), `#!/bin/sh\necho "$*" >> ${log}\nexec /usr/bin/ssh "$@"\n`);
    await chmod(join(bin, "ssh"), 0o755);
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path}`;
    try {
      const transport = sshActivationTransport(targetWith(join(lab.info.dir, "ssh_config")));
      expect(await transport.preflight()).toBeUndefined();
      const shared = await transport.run({ verb: "status" }, { timeoutSeconds: 30 });
      const settling = await transport.run({ verb: "status" }, { timeoutSeconds: 30, fresh: true });
      expect(shared.result, shared.failure).toBeDefined();
      expect(settling.result, settling.failure).toBeDefined();
    } finally {
      process.env.PATH = path;
    }
    const logins = (await readFile(log, "utf8"))
      .trim()
      .split("\n")
      .filter((l) => !l.includes(" -G "));
    expect(logins).toHaveLength(2);
    expect(logins[0]).toContain("ControlMaster=auto");
    expect(logins[0]).not.toContain("KexAlgorithms");
    expect(logins[1]).toContain("ControlPath=none");
    expect(logins[1]).toContain(`KexAlgorithms=${SETTLING_KEX},sntrup761x25519`);
  });
});
