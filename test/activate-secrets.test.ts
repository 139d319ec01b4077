// activate.sh --secrets on real lab hosts: age files encrypted to each host's own SSH host key
// (as the lab shows it at /etc/ssh/ssh_host_ed25519_key), decrypted by the age CLI on the host
// and installed on its tmpfs before the switch; every way a bundle is refused leaves the
// installed secrets and the system as they were, and the plaintext never reaches the output.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgeRecipient, encryptSecret, parseRecipient } from "../src/age/age.js";
import {
  ACTIVATE_EXIT,
  type ActivateOptions,
  type ActivationResult,
  activateArgs,
  answerOf,
  parseActivationResult,
  SECRETS_VARIABLE,
  scriptInput,
  statusArgs,
} from "../src/host/activation.js";
import {
  type BundledSecret,
  secretsBundle,
  secretsManifestDigest,
} from "../src/host/secrets-bundle.js";
import { labLayout } from "../src/lab/layout.js";
import { shellQuote } from "../src/util/shell-quote.js";
import { nixship, run, runOk } from "../support/cli.js";
import { type RunningServer, serveLabCache } from "../support/serve.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";

const LAB = "sx";
const H1 = `${LAB}1`;
const H2 = `${LAB}2`;
let work: string;
let labsDir: string;
let sshConfig: string;
let gateway: string;
let systems: Record<ExampleSystem, string>;
let server: RunningServer;
let publicKey: string;
/** A directory on the machine's disk, bound into sx1 as /run/sx-disk. */
let diskDir: string;
const recipients = new Map<string, AgeRecipient>();

interface HostRun {
  readonly code: number;
  readonly result: ActivationResult;
  readonly stdout: string;
  readonly stderr: string;
}

/** Every run of the script, to look for plaintext in. */
const runs: HostRun[] = [];
/** Every plaintext made. */
const plaintexts: string[] = [];

/** A secret's fields and plaintext (unique, so that it can be looked for anywhere). */
interface Plain {
  readonly name: string;
  readonly owner: string;
  readonly group: string;
  readonly mode: string;
  readonly path: string;
  readonly plaintext: string;
}

function plain(name: string, fields: Partial<Omit<Plain, "name" | "plaintext">> = {}): Plain {
  const plaintext = `${name}-plaintext-${randomBytes(12).toString("hex")}`;
  plaintexts.push(plaintext);
  return {
    name,
    owner: "root",
    group: "root",
    mode: "0400",
    path: `/run/keys/${name}`,
    ...fields,
    plaintext,
  };
}

/** The secret encrypted to `hosts` only, as nixship encrypts it (its name in the header). */
async function seal(secret: Plain, ...hosts: string[]): Promise<BundledSecret> {
  return sealAs(secret, secret.name, ...hosts);
}

/** The secret encrypted to `hosts` as the secret named `as` (undefined: as none). */
async function sealAs(
  secret: Plain,
  as: string | undefined,
  ...hosts: string[]
): Promise<BundledSecret> {
  const to = hosts.map((h) => recipients.get(h) as AgeRecipient);
  const ciphertext = await encryptSecret(
    new TextEncoder().encode(secret.plaintext),
    to,
    as === undefined ? {} : { secret: as },
  );
  const { plaintext: _, ...fields } = secret;
  return { ...fields, ciphertext };
}

async function ssh(host: string, command: string): Promise<string> {
  return runOk("ssh", ["-F", sshConfig, host, command]);
}

/** Pipes activate.sh to the host over SSH, with `variables` set before it. */
async function onHost(
  host: string,
  args: readonly string[],
  variables: Record<string, string> = {},
): Promise<HostRun> {
  const quoted = args.map(shellQuote).join(" ");
  const r = await run("ssh", ["-F", sshConfig, host, `sh -s -- ${quoted}`], {
    input: Buffer.from(scriptInput(variables)),
  });
  const hostRun = { ...r, result: parseActivationResult(r.stdout, host) };
  runs.push(hostRun);
  return hostRun;
}

/**
 * Activates `system` with --secrets and `bundle` in NIXSHIP_SECRETS, or as `extra` says
 * (without either: no --secrets).
 */
function activate(
  host: string,
  system: ExampleSystem,
  bundle: string | undefined,
  extra: Partial<ActivateOptions> = {},
  moreArgs: readonly string[] = [],
) {
  return onHost(
    host,
    [
      ...activateArgs({
        path: systems[system],
        action: "switch",
        substituters: [server.url],
        trustedKeys: [publicKey],
        ...(bundle === undefined ? {} : { secrets: {} }),
        ...extra,
      }),
      ...moreArgs,
    ],
    bundle === undefined ? {} : { [SECRETS_VARIABLE]: bundle },
  );
}

async function status(host: string) {
  const { result } = await onHost(host, statusArgs());
  const answer = answerOf(result, "status");
  if (answer === undefined) throw new Error("no status");
  return answer;
}

/** Owner, group, mode (as stat prints it: "400"), change time and content of a file on the host. */
async function installed(host: string, path: string) {
  const out = await ssh(
    host,
    `if [ -e ${path} ]; then stat -c '%U %G %a %.9Z' ${path}; cat ${path}; else echo absent; fi`,
  );
  if (out === "absent\n") return undefined;
  const [meta = "", ...content] = out.split("\n");
  const [owner, group, mode, changed] = meta.split(" ");
  return { owner, group, mode, changed, content: content.join("\n") };
}

/** What a failed or interrupted secrets step could leave behind on the host. */
async function leftovers(host: string): Promise<string> {
  return ssh(
    host,
    "find /run -name '.nixship-*.new' 2>/dev/null; ls -d /run/nixship/secrets-work 2>/dev/null; true",
  );
}

const expectFailure = (r: HostRun, message: string, exitCode: number = ACTIVATE_EXIT.secrets) => {
  expect(r.code, JSON.stringify(r.result)).toBe(exitCode);
  expect(r.result).toEqual(
    expect.objectContaining({
      ok: false,
      command: "activate",
      result: "failed",
      phase: "secrets",
      exitCode,
      message,
      rolledBack: false,
    }),
  );
};

const alpha = plain("alpha");
const beta = plain("beta", {
  owner: "nobody",
  group: "nogroup",
  mode: "0440",
  path: "/run/app/conf/beta",
});
let installedAlpha: Awaited<ReturnType<typeof installed>>;
let installedBeta: Awaited<ReturnType<typeof installed>>;
let firstDigest: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-secrets-"));
  diskDir = await mkdtemp("/var/tmp/nixship-sx-disk-");
  labsDir = join(work, "labs");
  systems = await buildExampleSystems();
  const up = await nixship(["lab", "up", "2", "--name", LAB, "--json"], {
    env: { NIXSHIP_LAB_DIR: labsDir },
  });
  expect(up.code, up.stderr).toBe(0);
  const lab = JSON.parse(up.stdout) as { number: number; files: { sshConfig: string } };
  sshConfig = lab.files.sshConfig;
  const layout = labLayout(labsDir, LAB, lab.number, 2);
  gateway = layout.gateway;
  for (const host of layout.hosts) {
    const key = await readFile(join(host.dir, "ssh_host_ed25519_key.pub"), "utf8");
    recipients.set(host.name, parseRecipient(key.trim(), host.name));
  }
  ({ server, publicKey } = await serveLabCache(work, Object.values(systems), gateway));
});

afterAll(async () => {
  await server?.stop();
  await nixship(["lab", "down", "--name", LAB], { env: { NIXSHIP_LAB_DIR: labsDir } });
  await rm(work, { recursive: true, force: true });
  await rm(diskDir, { recursive: true, force: true });
});

describe("activate --secrets on a lab host", () => {
  it("the host sees its own host key at /etc/ssh, and the machine keeps its own", async () => {
    const seen = await ssh(H1, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    expect(parseRecipient(seen.trim(), H1).text).toBe(recipients.get(H1)?.text);
    expect(recipients.get(H1)?.text).not.toBe(recipients.get(H2)?.text);
    const machine = await readFile("/etc/ssh/ssh_host_ed25519_key.pub", "utf8").catch(() => "");
    expect(machine).not.toContain(recipients.get(H1)?.text.split(" ")[1]);
  });

  it("installs two secrets with their owner, group and mode, before the switch", async () => {
    const sent = [await seal(alpha, H1), await seal(beta, H1, H2)];
    const r = await activate(H1, "web-v1", secretsBundle(sent));
    expect(r.code, r.stderr).toBe(0);
    expect(r.result).toMatchObject({ ok: true, result: "activated", generation: 1 });
    installedAlpha = await installed(H1, alpha.path);
    installedBeta = await installed(H1, beta.path);
    expect(installedAlpha).toMatchObject({
      owner: "root",
      group: "root",
      mode: "400",
      content: alpha.plaintext,
    });
    expect(installedBeta).toMatchObject({
      owner: "nobody",
      group: "nogroup",
      mode: "440",
      content: beta.plaintext,
    });
    // Both were in place before switch-to-configuration pointed /run/current-system at the
    // new system.
    const switched = (await ssh(H1, "stat -c %.9Y /run/current-system")).trim();
    for (const file of [installedAlpha, installedBeta]) {
      expect(Number(file?.changed)).toBeLessThan(Number(switched));
    }
    expect(r.stderr.indexOf("installed 2 secrets")).toBeGreaterThan(-1);
    expect(r.stderr.indexOf("installed 2 secrets")).toBeLessThan(
      r.stderr.indexOf("switch-to-configuration switch"),
    );
    firstDigest = secretsManifestDigest(sent);
    expect(await status(H1)).toMatchObject({ current: systems["web-v1"], secrets: firstDigest });
    expect(await leftovers(H1)).toBe("");
    // A host given none reports the digest of no manifest.
    expect((await status(H2)).secrets).toBe(secretsManifestDigest([]));
  });

  it("refuses a secret encrypted to another host: nothing installed, the system unchanged", async () => {
    const gamma = plain("gamma", { path: "/run/other/gamma" });
    // alpha changes, and comes first: it must not be installed either.
    const alpha2 = { ...alpha, plaintext: `${alpha.plaintext}-v2` };
    plaintexts.push(alpha2.plaintext);
    const sent = [await seal(alpha2, H1), await seal(beta, H1), await seal(gamma, H2)];
    const r = await activate(H1, "web-v2", secretsBundle(sent));
    expectFailure(
      r,
      "secret gamma: cannot be decrypted with /etc/ssh/ssh_host_ed25519_key (not encrypted to this host, or tampered)",
    );
    expect(r.result).toMatchObject({ previous: systems["web-v1"], generation: 1 });
    expect(await installed(H1, alpha.path)).toEqual(installedAlpha);
    expect(await installed(H1, beta.path)).toEqual(installedBeta);
    expect(await installed(H1, gamma.path)).toBeUndefined();
    expect(await leftovers(H1)).toBe("");
    expect(await status(H1)).toMatchObject({
      current: systems["web-v1"],
      profile: systems["web-v1"],
      generation: 1,
      activation: null,
      secrets: firstDigest,
    });
  });

  it("refuses a tampered age file whose sha256 was made to match", async () => {
    const delta = plain("delta");
    const sealed = await seal(delta, H1);
    const tampered = Uint8Array.from(sealed.ciphertext);
    tampered[tampered.length - 1] = (tampered.at(-1) as number) ^ 0x01;
    const r = await activate(
      H1,
      "web-v2",
      secretsBundle([await seal(alpha, H1), { ...sealed, ciphertext: tampered }]),
    );
    expectFailure(
      r,
      "secret delta: cannot be decrypted with /etc/ssh/ssh_host_ed25519_key (not encrypted to this host, or tampered)",
    );
    expect(await installed(H1, delta.path)).toBeUndefined();
    expect(await installed(H1, alpha.path)).toEqual(installedAlpha);
    expect(await leftovers(H1)).toBe("");
    expect((await status(H1)).secrets).toBe(firstDigest);
  });

  it("refuses one secret's age file sent as another's (the name its header's MAC binds)", async () => {
    const eta = plain("eta");
    const asAlpha = await sealAs(eta, alpha.name, H1);
    const r = await activate(H1, "web-v2", secretsBundle([{ ...asAlpha, name: "eta" }]));
    expectFailure(
      r,
      "secret eta: its age file was encrypted as secret 'alpha': a file is installed under the name it was encrypted as alone",
    );
    expect(await installed(H1, eta.path)).toBeUndefined();
    // The name changed in the header (its sha256 made to match): age's MAC check refuses it.
    const renamed = Buffer.from(asAlpha.ciphertext)
      .toString("latin1")
      .replace("-> nixship-secret alpha\n", "-> nixship-secret eta\n");
    expect(renamed).toContain("nixship-secret eta");
    const forged = await activate(
      H1,
      "web-v2",
      secretsBundle([{ ...asAlpha, name: "eta", ciphertext: Buffer.from(renamed, "latin1") }]),
    );
    expectFailure(
      forged,
      "secret eta: cannot be decrypted with /etc/ssh/ssh_host_ed25519_key (not encrypted to this host, or tampered)",
    );
    expect(await installed(H1, eta.path)).toBeUndefined();
    expect(await leftovers(H1)).toBe("");
    expect((await status(H1)).secrets).toBe(firstDigest);
    // (A file that names no secret installs off pinned trust: secrets-install-edges.test.ts
    // installs such files; pinned-deploy.test.ts has a pinned host refuse one.)
  });

  it("refuses an age file that does not match its sha256", async () => {
    const epsilon = plain("epsilon");
    const bundle = secretsBundle([await seal(epsilon, H1)]);
    const lines = bundle.split("\n");
    const fields = (lines[1] as string).split(" ");
    fields[5] = "0".repeat(64);
    lines[1] = fields.join(" ");
    const r = await activate(H1, "web-v2", lines.join("\n"));
    expectFailure(r, "secret epsilon: its age file does not match its sha256");
    expect(await installed(H1, epsilon.path)).toBeUndefined();
    expect(await leftovers(H1)).toBe("");
    expect((await status(H1)).secrets).toBe(firstDigest);
  });

  it("refuses an owner that does not exist on the host, writing nothing", async () => {
    const zeta = plain("zeta", { owner: "nxs-no-such-user", path: "/run/zeta-dir/zeta" });
    const r = await activate(
      H1,
      "web-v2",
      secretsBundle([await seal(alpha, H1), await seal(beta, H1), await seal(zeta, H1)]),
    );
    expectFailure(r, "secret zeta: owner 'nxs-no-such-user' does not exist on this host");
    expect(await ssh(H1, "ls -d /run/zeta-dir 2>/dev/null; true")).toBe("");
    expect(await installed(H1, alpha.path)).toEqual(installedAlpha);
    expect(await leftovers(H1)).toBe("");
    expect((await status(H1)).secrets).toBe(firstDigest);
  });

  it("refuses a path whose directory is not on a tmpfs, writing nothing to the disk", async () => {
    await ssh(H1, `mkdir -p /run/sx-disk && mount --bind ${shellQuote(diskDir)} /run/sx-disk`);
    try {
      const eta = plain("eta", { path: "/run/sx-disk/eta" });
      const r = await activate(H1, "web-v2", secretsBundle([await seal(eta, H1)]));
      expect(r.code, JSON.stringify(r.result)).toBe(ACTIVATE_EXIT.secrets);
      expect(r.result).toMatchObject({
        phase: "secrets",
        message: expect.stringMatching(/^secret eta: \/run\/sx-disk is not on a tmpfs \(it is on /),
      });
      expect(await readdir(diskDir)).toEqual([]);
      expect((await status(H1)).secrets).toBe(firstDigest);
    } finally {
      await ssh(H1, "umount /run/sx-disk && rmdir /run/sx-disk");
    }
  });

  it("a later bundle without a secret removes its file, and installs the rest", async () => {
    const sent = [await seal(alpha, H1)];
    const r = await activate(H1, "web-v2", secretsBundle(sent));
    expect(r.code, JSON.stringify(r.result)).toBe(0);
    expect(await installed(H1, beta.path)).toBeUndefined();
    expect(await installed(H1, alpha.path)).toMatchObject({ content: alpha.plaintext });
    expect(await status(H1)).toMatchObject({
      current: systems["web-v2"],
      generation: 2,
      secrets: secretsManifestDigest(sent),
    });
  });

  it("without --secrets, leaves the installed secrets as they are", async () => {
    const before = await status(H1);
    const r = await activate(H1, "web-v1", undefined);
    expect(r.code, JSON.stringify(r.result)).toBe(0);
    expect(await installed(H1, alpha.path)).toMatchObject({ content: alpha.plaintext });
    expect((await status(H1)).secrets).toBe(before.secrets);
  });

  it("dry-activate leaves the secrets and the kept bundle as they are; test installs them and keeps the bundle of the boot", async () => {
    const kept = async () => ssh(H1, "sha256sum /nix/var/nixship/secrets-bundle");
    const before = await status(H1);
    const keptBefore = await kept();
    const gamma = plain("gamma");
    // A bundle that replaces alpha with gamma.
    const bundle = secretsBundle([await seal(gamma, H1)]);
    const dry = await activate(H1, "web-v2", bundle, { action: "dry-activate" });
    expect(dry.code, JSON.stringify(dry.result)).toBe(0);
    expect(dry.stderr).toContain("dry-activate: the secrets are left as they are");
    expect(await installed(H1, alpha.path)).toMatchObject({ content: alpha.plaintext });
    expect(await installed(H1, gamma.path)).toBeUndefined();
    expect((await status(H1)).secrets).toBe(before.secrets);
    expect(await kept()).toBe(keptBefore);
    // test: the running system gets them; after a boot, the boot default's come back.
    const tested = await activate(H1, "web-v2", bundle, { action: "test" });
    expect(tested.code, JSON.stringify(tested.result)).toBe(0);
    expect(await installed(H1, gamma.path)).toMatchObject({ content: gamma.plaintext });
    expect(await installed(H1, alpha.path)).toBeUndefined();
    expect(await kept()).toBe(keptBefore);
    // Back as the tests below expect: web-v1 switched with alpha, kept.
    const back = await activate(H1, "web-v1", secretsBundle([await seal(alpha, H1)]));
    expect(back.code, JSON.stringify(back.result)).toBe(0);
    expect(await installed(H1, gamma.path)).toBeUndefined();
  });

  it("restore-secrets installs the kept bundle again after a boot emptied /run, and only then", async () => {
    const before = await status(H1);
    const restore = async () => {
      const r = await run("ssh", ["-F", sshConfig, H1, "sh -s -- restore-secrets"], {
        input: Buffer.from(scriptInput({})),
      });
      return { code: r.code, answer: JSON.parse(r.stdout.trim().split("\n").at(-1) ?? "") };
    };
    // What a boot leaves: the disk, and an empty /run.
    await ssh(H1, `rm -f /run/nixship/secrets ${alpha.path}`);
    expect(await restore()).toEqual({
      code: 0,
      answer: { ok: true, command: "restore-secrets", result: "restored", secrets: 1 },
    });
    expect(await installed(H1, alpha.path)).toMatchObject({ content: alpha.plaintext });
    expect((await status(H1)).secrets).toBe(before.secrets);
    expect(await restore()).toEqual({
      code: 0,
      answer: { ok: true, command: "restore-secrets", result: "unchanged" },
    });
    // A kept bundle changed on the disk is refused, naming the secret; nothing is installed.
    const kept = "/nix/var/nixship/secrets-bundle";
    await ssh(H1, `cp ${kept} /root/kept && rm -f /run/nixship/secrets ${alpha.path}`);
    await ssh(
      H1,
      `awk 'NR == 2 { $6 = "${"0".repeat(64)}" } { print }' ${kept} > /root/bad && cp /root/bad ${kept}`,
    );
    const refused = await restore();
    expect(refused.code).toBe(ACTIVATE_EXIT.secrets);
    expect(refused.answer).toMatchObject({
      ok: false,
      command: "restore-secrets",
      phase: "secrets",
      message: `secret ${alpha.name}: its age file does not match its sha256`,
    });
    expect(await installed(H1, alpha.path)).toBeUndefined();
    expect(await leftovers(H1)).toBe("");
    await ssh(H1, `cp /root/kept ${kept}`);
    expect((await restore()).answer).toMatchObject({ result: "restored" });
  });

  it("fetches the bundle from --secrets-url, refused unless its sha256 matches", async () => {
    const theta = plain("theta", { path: "/run/keys/theta" });
    const sent = [await seal(alpha, H2), await seal(theta, H2)];
    const bundle = Buffer.from(secretsBundle(sent));
    const sha256 = createHash("sha256").update(bundle).digest("hex");
    const http: Server = createServer((_req, res) => res.end(bundle));
    await new Promise<void>((resolve) => http.listen(0, gateway, resolve));
    try {
      const { port } = http.address() as { port: number };
      const url = `http://${gateway}:${port}/bundle`;
      // As a person runs the script by hand; nixship's SSM document gives the URL on the
      // script's input (--secrets-url -), so that it shows in no process's arguments.
      const fetched = (u: string, sha: string) => ["--secrets-url", u, "--secrets-sha256", sha];
      const wrong = await activate(
        H2,
        "web-v1",
        undefined,
        { secrets: {} },
        fetched(url, "f".repeat(64)),
      );
      expectFailure(
        wrong,
        `secrets bundle: the one fetched has sha256 ${sha256}, not ${"f".repeat(64)}`,
      );
      expect(await installed(H2, theta.path)).toBeUndefined();
      expect(await leftovers(H2)).toBe("");
      const right = await activate(H2, "web-v1", undefined, { secrets: {} }, fetched(url, sha256));
      expect(right.code, JSON.stringify(right.result)).toBe(0);
      expect(await installed(H2, theta.path)).toMatchObject({ content: theta.plaintext });
      expect(await installed(H2, alpha.path)).toMatchObject({ content: alpha.plaintext });
      expect((await status(H2)).secrets).toBe(secretsManifestDigest(sent));
      // The URL may carry credentials: it is not logged.
      expect(right.stderr).not.toContain(url);
      // It reaches curl in a configuration: a quote could end its string there, so a character
      // a URL does not hold is refused before anything is fetched.
      const quoted = await activate(
        H2,
        "web-v2",
        undefined,
        { secrets: {} },
        fetched(`${url}" -o /tmp/nixship-x`, sha256),
      );
      expect(quoted.code).toBe(2);
      expect(JSON.stringify(quoted.result)).toContain(
        "--secrets-url holds a character a URL does not (percent-encode it)",
      );
    } finally {
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it("opens a URL sealed to its host key (age:), refuses one sealed to another, and makes the empty bundle of 'none'", async () => {
    const iota = plain("iota", { path: "/run/keys/iota" });
    const sent = [await seal(iota, H2)];
    const bundle = Buffer.from(secretsBundle(sent));
    const sha256 = createHash("sha256").update(bundle).digest("hex");
    const http: Server = createServer((_req, res) => res.end(bundle));
    await new Promise<void>((resolve) => http.listen(0, gateway, resolve));
    try {
      const { port } = http.address() as { port: number };
      const url = `http://${gateway}:${port}/sealed-bundle`;
      const sealedTo = async (host: string) =>
        `age:${Buffer.from(
          await encryptSecret(new TextEncoder().encode(url), [
            recipients.get(host) as AgeRecipient,
          ]),
        ).toString("base64")}`;
      const fetched = (u: string, sha: string) => ["--secrets-url", u, "--secrets-sha256", sha];
      // Sealed to another host's key: this host cannot open it, and fetches nothing.
      const other = await activate(
        H2,
        "web-v2",
        undefined,
        { secrets: {} },
        fetched(await sealedTo(H1), sha256),
      );
      expectFailure(
        other,
        "secrets bundle: its URL cannot be opened with /etc/ssh/ssh_host_ed25519_key (not sealed to this host's key)",
      );
      expect(await installed(H2, iota.path)).toBeUndefined();
      const right = await activate(
        H2,
        "web-v2",
        undefined,
        { secrets: {} },
        fetched(await sealedTo(H2), sha256),
      );
      expect(right.code, JSON.stringify(right.result)).toBe(0);
      expect(await installed(H2, iota.path)).toMatchObject({ content: iota.plaintext });
      expect(right.stderr).not.toContain(url);
      expect(await leftovers(H2)).toBe("");
      // "none": the empty bundle, made on the host (nothing fetched): the secrets go.
      const empty = createHash("sha256").update("nixship-secrets 1\n").digest("hex");
      const none = await activate(H2, "web-v1", undefined, { secrets: {} }, fetched("none", empty));
      expect(none.code, JSON.stringify(none.result)).toBe(0);
      expect(await installed(H2, iota.path)).toBeUndefined();
      expect((await status(H2)).secrets).toBe(secretsManifestDigest([]));
    } finally {
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it("refuses a service user's own directory, naming it: links it planted change nothing", async () => {
    const token = plain("token", { owner: "nobody", group: "nogroup", path: "/run/svc/token" });
    // /run/svc is nobody's (a service's runtime directory); nobody plants links to root's files.
    await ssh(
      H2,
      [
        "mkdir -p /run/svc && chown nobody:nogroup /run/svc && chmod 755 /run/svc",
        "printf original > /run/victim && chmod 600 /run/victim",
        "printf original > /run/victim2 && chmod 600 /run/victim2",
        "setpriv --reuid nobody --regid nogroup --clear-groups sh -c 'ln -s /run/victim /run/svc/.nixship-token.new && ln -s /run/victim2 /run/svc/token'",
      ].join(" && "),
    );
    const r = await activate(H2, "web-v1", secretsBundle([await seal(token, H2)]));
    expectFailure(
      r,
      "secret token: /run/svc can be changed by users other than root: make it root's alone (e.g. 0750 root:GROUP for a service to read), or put the secret in such a directory",
    );
    for (const victim of ["/run/victim", "/run/victim2"]) {
      expect(await installed(H2, victim)).toMatchObject({
        owner: "root",
        group: "root",
        mode: "600",
        content: "original",
      });
    }
    expect((await ssh(H2, "stat -c %F /run/svc/token")).trim()).toBe("symbolic link");
    expect((await ssh(H2, "ls /run/nixship")).split("\n")).not.toContain("secrets-work");
    // What nobody planted is nobody's; gone, so that the next tests see no leftovers.
    await ssh(H2, "rm /run/svc/.nixship-token.new /run/svc/token");
  });

  it("a link a service user puts on a secret's way redirects neither the secret nor its removal", async () => {
    // /run/svcx is the service's; its link keys -> /run/rootonly leads to root's own file.
    await ssh(
      H2,
      [
        "mkdir -p /run/svcx /run/rootonly && chown nobody:nogroup /run/svcx && chmod 700 /run/rootonly",
        "printf roots-own > /run/rootonly/plain && chmod 600 /run/rootonly/plain",
        "setpriv --reuid nobody --regid nogroup --clear-groups ln -s /run/rootonly /run/svcx/keys",
      ].join(" && "),
    );
    const secret = plain("plain", {
      owner: "nobody",
      group: "nogroup",
      path: "/run/svcx/keys/plain",
    });
    const before = (await status(H2)).secrets;
    const r = await activate(H2, "web-v1", secretsBundle([await seal(secret, H2)]));
    expectFailure(
      r,
      "secret plain: /run/svcx, above /run/svcx/keys, can be changed by users other than root",
    );
    const rootsOwn = { owner: "root", group: "root", mode: "600", content: "roots-own" };
    expect(await installed(H2, "/run/rootonly/plain")).toMatchObject(rootsOwn);
    expect((await status(H2)).secrets).toBe(before);
    // An earlier bundle installed that secret (when keys was a directory): a bundle without it
    // removes nothing through the link, and says so.
    const kept = [await seal(alpha, H2)];
    const sha = createHash("sha256").update("earlier").digest("hex");
    await ssh(
      H2,
      `printf '%s\\n' ${shellQuote(`plain nobody nogroup 0400 /run/svcx/keys/plain ${sha}`)} >> /run/nixship/secrets`,
    );
    const removal = await activate(H2, "web-v1", secretsBundle(kept));
    expect(removal.code, JSON.stringify(removal.result)).toBe(0);
    expect(removal.stderr).toContain(
      "left /run/svcx/keys/plain, which an earlier bundle installed: /run/svcx, above /run/svcx/keys, can be changed by users other than root",
    );
    expect(await installed(H2, "/run/rootonly/plain")).toMatchObject(rootsOwn);
    expect((await status(H2)).secrets).toBe(secretsManifestDigest(kept));
    await ssh(H2, "rm -rf /run/svcx /run/rootonly");
  });

  it("refuses a path below a directory that users other than root can change, writing nothing", async () => {
    const shared = plain("shared", { path: "/run/shared/app/shared" });
    await ssh(
      H2,
      "mkdir -p /run/shared/app && chmod 1777 /run/shared && chmod 755 /run/shared/app",
    );
    const r = await activate(H2, "web-v1", secretsBundle([await seal(shared, H2)]));
    expectFailure(
      r,
      "secret shared: /run/shared, above /run/shared/app, can be changed by users other than root",
    );
    expect(await installed(H2, shared.path)).toBeUndefined();
    expect(await leftovers(H2)).toBe("");
  });

  it("refuses a directory that resolves outside /run (a link to /dev/shm), writing nothing there", async () => {
    const outside = await ssh(H2, "mktemp -d /dev/shm/nixship-sx-XXXXXX");
    const linked = plain("linked", { path: "/run/linked/linked" });
    try {
      await ssh(H2, `ln -sfn ${outside.trim()} /run/linked`);
      const r = await activate(H2, "web-v1", secretsBundle([await seal(linked, H2)]));
      expectFailure(
        r,
        `secret linked: /run/linked resolves to ${outside.trim()}, which is not under /run`,
      );
      expect((await ssh(H2, `ls -A ${outside.trim()}`)).trim()).toBe("");
    } finally {
      await ssh(H2, `rm -rf ${outside.trim()} /run/linked`);
    }
  });

  it("shows no plaintext in any run's stdout, stderr or JSON result", () => {
    expect(runs.length).toBeGreaterThan(10);
    for (const r of runs) {
      const seen = `${r.stdout}\n${r.stderr}\n${JSON.stringify(r.result)}`;
      for (const p of plaintexts) expect(seen).not.toContain(p);
    }
  });
});
