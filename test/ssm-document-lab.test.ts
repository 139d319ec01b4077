// The SSM document, for real: the shell renderRunCommand makes of it (what SSM's agent runs)
// run as-is on a lab host, as root, with the real Nix substituting from our cache on the
// lab's bridge: deploys, health checks passed as HealthChecks, rollback on a failing one,
// Command=status and Command=rollback. No SSM and no SSH involved.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encryptSecret, parseRecipient } from "../src/age/age.js";
import { putSecretsBundle, secretsBundleKey } from "../src/channel/secrets-store.js";
import {
  encodeHealthChecks,
  renderRunCommand,
  type SsmParameterValues,
  ssmDocument,
} from "../src/delivery/ssm-document.js";
import {
  ACTIVATE_EXIT,
  type ActivationResult,
  answerOf,
  parseActivationResult,
} from "../src/host/activation.js";
import { secretsBundle } from "../src/host/secrets-bundle.js";
import type { ObjectStore } from "../src/store/object-store.js";
import { openStore } from "../src/store/url.js";
import { nixship, run } from "../support/cli.js";
import { type S3Server, startS3Server } from "../support/s3-server.js";
import { type RunningServer, serveLabCache } from "../support/serve.js";
import { buildExampleSystems, type ExampleSystem } from "./support/example-systems.js";
import { filesHolding, freshPlaintext } from "./support/secrets-scan.js";

const LAB = "sm";
const HOST = `${LAB}1`;
let work: string;
let labsDir: string;
let address: string;
let systems: Record<ExampleSystem, string>;
let server: RunningServer;
let publicKey: string;
let labNumber: number;
const env = () => ({ NIXSHIP_LAB_DIR: labsDir });

const HEALTHY = "curl -fsS --max-time 3 http://127.0.0.1/health";

/** Runs `shell` on the host as SSM's agent does: written to a file, run by sh, as root. */
async function onHost(shell: string) {
  return nixship(
    [
      "lab",
      "exec",
      HOST,
      "--",
      "sh",
      "-c",
      "cat >/tmp/_script.sh && exec sh /tmp/_script.sh </dev/null",
    ],
    { input: Buffer.from(shell), env: env() },
  );
}

/** The document with these parameters, rendered as SSM would and run on the host. */
async function runDocument(
  parameters: SsmParameterValues,
): Promise<{ code: number; result: ActivationResult; stderr: string }> {
  const r = await onHost(renderRunCommand(ssmDocument(), parameters as Record<string, string>));
  return { code: r.code, result: parseActivationResult(r.stdout, HOST), stderr: r.stderr };
}

function activate(system: ExampleSystem, checks: readonly string[] = []) {
  return runDocument({
    StorePath: systems[system],
    Substituters: server.url,
    TrustedPublicKeys: publicKey,
    HealthChecks: encodeHealthChecks(checks.map((run) => ({ run, timeout: 10 }))),
  });
}

async function served(): Promise<string> {
  const r = await run("curl", ["-s", "--max-time", "5", `http://${address}/version`]);
  return r.stdout ? (JSON.parse(r.stdout) as { name: string }).name : "(nothing)";
}

async function status() {
  const { code, result } = await runDocument({ Command: "status" });
  expect(code).toBe(0);
  const answer = answerOf(result, "status");
  if (answer === undefined) throw new Error("no status");
  return answer;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nixship-ssm-lab-"));
  labsDir = join(work, "labs");
  systems = await buildExampleSystems();
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  const lab = JSON.parse(up.stdout) as { number: number; hosts: { address: string }[] };
  address = lab.hosts[0]?.address ?? "";
  labNumber = lab.number;
  const pushed = [
    systems["web-v1"],
    systems["web-v2"],
    systems["web-broken"],
    systems["web-hang"],
    systems["web-v4"],
    systems["web-v4-broken"],
  ];
  ({ server, publicKey } = await serveLabCache(
    work,
    pushed,
    `10.231.${lab.number}.1`,
    "ssm-lab-cache-1",
  ));
});

afterAll(async () => {
  await server?.stop();
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await rm(work, { recursive: true, force: true });
});

describe("the SSM document's shell on a lab host", () => {
  it("is clean under shellcheck", async () => {
    const shell = renderRunCommand(ssmDocument(), {
      StorePath: systems["web-v1"],
      Substituters: server.url,
      TrustedPublicKeys: publicKey,
      HealthChecks: encodeHealthChecks([{ run: HEALTHY, timeout: 5 }]),
    });
    const r = await run("shellcheck", ["-s", "sh", "-"], { input: Buffer.from(shell) });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.code).toBe(0);
  });

  it("deploys web-v1 from the cache", async () => {
    const { code, result, stderr } = await activate("web-v1");
    expect(code, stderr).toBe(0);
    expect(result).toMatchObject({ ok: true, result: "activated", generation: 1, previous: null });
    expect(await served()).toBe("web-v1");
  });

  it("deploys web-v2, its HealthChecks (shell text, quotes and all) run on the host", async () => {
    const version = `test "$(cat /run/current-system/nixos-version)" = 'web-v2'`;
    const { code, result, stderr } = await activate("web-v2", [HEALTHY, version]);
    expect(code, stderr).toBe(0);
    expect(result).toMatchObject({ ok: true, result: "activated", generation: 2 });
    expect(stderr).toContain(`activate: health: ${version}`);
    expect(await served()).toBe("web-v2");
  });

  it("rolls web-broken back to web-v2 when a health check fails", async () => {
    const { code, result } = await activate("web-broken", [HEALTHY]);
    expect(code).toBe(ACTIVATE_EXIT.health);
    expect(result).toMatchObject({ ok: false, phase: "health", rolledBack: true, generation: 2 });
    expect(await served()).toBe("web-v2");
  });

  it("rolls a healthy system back when a check in HealthChecks says no (run once: retry false)", async () => {
    const wrong = `test "$(cat /run/current-system/nixos-version)" = 'web-v3'`;
    const { code, result } = await runDocument({
      StorePath: systems["web-v1"],
      Substituters: server.url,
      TrustedPublicKeys: publicKey,
      HealthChecks: encodeHealthChecks([
        { run: HEALTHY, timeout: 10 },
        { run: wrong, timeout: 30, retry: false },
      ]),
    });
    expect(code).toBe(ACTIVATE_EXIT.health);
    expect(result).toMatchObject({ ok: false, phase: "health", rolledBack: true });
    // The check, its exit code, that it printed nothing, and that it ran once.
    expect((result as { message: string }).message).toBe(
      `health check failed: ${wrong}: exit code 1 (1 attempt only: retry false); no output`,
    );
    expect(await served()).toBe("web-v2");
  });

  it("answers Command=status", async () => {
    const s = await status();
    expect(s).toMatchObject({ current: systems["web-v2"], generation: 2, pending: null });
    // The failed attempt (web-v1 with a check that said no) left no generation behind.
    expect(s.generations.map((g) => g.generation)).toEqual([1, 2]);
  });

  it("with ExpectCurrent naming another system than it runs, changes nothing (exit 14)", async () => {
    const changed = await runDocument({
      StorePath: systems["web-v3"],
      Substituters: server.url,
      TrustedPublicKeys: publicKey,
      ExpectCurrent: systems["web-v1"],
    });
    expect(changed.code, changed.stderr).toBe(ACTIVATE_EXIT.changed);
    expect(changed.result).toMatchObject({
      ok: false,
      result: "changed",
      previous: systems["web-v2"],
      message: expect.stringContaining(`it runs ${systems["web-v2"]}, not ${systems["web-v1"]}`),
    });
    expect(await served()).toBe("web-v2");
    const s = await status();
    expect(s).toMatchObject({ current: systems["web-v2"], generation: 2 });
    expect(s.generations.map((g) => g.generation)).toEqual([1, 2]);
  });

  it("rolls back on Command=rollback, to the previous generation or to Generation", async () => {
    const back = await runDocument({ Command: "rollback" });
    expect(back.code, back.stderr).toBe(0);
    expect(back.result).toMatchObject({ ok: true, result: "rolled-back", from: 2, generation: 1 });
    expect(await served()).toBe("web-v1");
    const to = await runDocument({ Command: "rollback", Generation: "2" });
    expect(to.code, to.stderr).toBe(0);
    expect(to.result).toMatchObject({ ok: true, result: "rolled-back", generation: 2 });
    expect(await served()).toBe("web-v2");
    const none = await runDocument({ Command: "rollback", Generation: "99" });
    expect(none.code).toBe(ACTIVATE_EXIT.noGeneration);
    expect((await status()).current).toBe(systems["web-v2"]);
  });

  it("answers undecodable HealthChecks with a usage result, and leaves no file behind", async () => {
    const r = await runDocument({ StorePath: systems["web-v1"], HealthChecks: "bm90IGpzb24=" });
    expect(r.code).toBe(ACTIVATE_EXIT.usage);
    expect(r.result).toMatchObject({ ok: false, result: "usage" });
    expect(r.result).toHaveProperty("message", expect.stringContaining("HealthChecks"));
    const left = await nixship(["lab", "exec", HOST, "--", "sh", "-c", "ls /tmp"], { env: env() });
    expect(left.stdout.split("\n").filter((f) => f.startsWith("nixship-activate"))).toEqual([]);
    expect(await served()).toBe("web-v2");
  });

  it("stops web-hang's switch at ActivationTimeout, and puts the system and the profile back", async () => {
    const started = performance.now();
    const { code, result, stderr } = await runDocument({
      StorePath: systems["web-hang"],
      Substituters: server.url,
      TrustedPublicKeys: publicKey,
      ActivationTimeout: "3",
    });
    expect(code, stderr).toBe(ACTIVATE_EXIT.timedOut);
    expect(result).toMatchObject({
      ok: false,
      result: "timed-out",
      phase: "switch",
      message: "switch-to-configuration ran past the activation timeout of 3s; stopped it",
      rolledBack: true,
      previous: systems["web-v2"],
      previousGeneration: 2,
      generation: 2,
    });
    expect((performance.now() - started) / 1000).toBeLessThan(3 + 20);
    expect(await served()).toBe("web-v2");
    expect(await status()).toMatchObject({
      current: systems["web-v2"],
      profile: systems["web-v2"],
      generation: 2,
      activation: null,
    });
    // The host is free: the next deploy goes through.
    const next = await activate("web-v1", [HEALTHY]);
    expect(next.code, next.stderr).toBe(0);
    // web-hang's generation was dropped with its rollback, and its number is not made again:
    // web-v1 is the sixth, past those of web-broken (3), the web-v1 a check refused
    // (4) and web-hang (5).
    expect(next.result).toMatchObject({ ok: true, result: "activated", generation: 6 });
    expect(await served()).toBe("web-v1");
  });

  it("prunes on Command=prune to KeepGenerations, keeping the rollback target", async () => {
    const before = (await status()).generations.map((g) => g.generation);
    expect(before).toEqual([1, 2, 6]);
    const r = await runDocument({ Command: "prune", KeepGenerations: "1" });
    expect(r.code, r.stderr).toBe(0);
    expect(r.result).toMatchObject({
      ok: true,
      command: "prune",
      kept: [2, 6],
      removed: [1],
      gc: "done",
    });
    expect((await status()).generations.map((g) => g.generation)).toEqual([2, 6]);
    expect(await served()).toBe("web-v1");
    // Without KeepGenerations, nothing is removed: a usage result.
    const none = await runDocument({ Command: "prune" });
    expect(none.code).toBe(ACTIVATE_EXIT.usage);
  });

  it("after v1, v2, a failed check, a hanging switch and v1: Command=rollback goes to v2, and the profile holds no failed system", async () => {
    const held = (await status()).generations.map((g) => g.path);
    expect(held).toEqual([systems["web-v2"], systems["web-v1"]]);
    const back = await runDocument({ Command: "rollback" });
    expect(back.code, back.stderr).toBe(0);
    expect(back.result).toMatchObject({ ok: true, result: "rolled-back", path: systems["web-v2"] });
    expect(await served()).toBe("web-v2");
  });
});

describe("secrets through the SSM document: a presigned URL sealed to the host's key, never the secret", () => {
  const TOKEN = freshPlaintext("ssm-web-token");
  const PASSWORD = freshPlaintext("ssm-db-password");
  let s3: S3Server;
  let s3Dir: string;
  let store: ObjectStore;
  let bundle: string;
  let sha: string;
  let url: string;
  /** The URL sealed to the host's key, as the deployer sends it (SecretsUrl "age:…"). */
  let sealed: string;

  beforeAll(async () => {
    // The deployer's S3 (s3rver) on the lab's bridge, where the host can reach it.
    s3 = await startS3Server("nixship-ssm-secrets", { address: `10.231.${labNumber}.1` });
    s3Dir = s3.directory;
    store = await openStore(s3.url);
    const pub = await readFile(
      join(labsDir, LAB, "hosts", HOST, "ssh_host_ed25519_key.pub"),
      "utf8",
    );
    const [type, key] = pub.trim().split(/\s+/);
    const to = [parseRecipient(`${type} ${key}`, HOST)];
    bundle = secretsBundle([
      {
        name: "web-token",
        owner: "root",
        group: "nogroup",
        mode: "0440",
        path: "/run/keys/web-token",
        ciphertext: await encryptSecret(Buffer.from(TOKEN), to),
      },
      {
        name: "db-password",
        owner: "nobody",
        group: "root",
        mode: "0400",
        path: "/run/keys/db-password",
        ciphertext: await encryptSecret(Buffer.from(PASSWORD), to),
      },
    ]);
    sha = await putSecretsBundle(store, HOST, bundle);
    url = await (store.presignGet as NonNullable<ObjectStore["presignGet"]>)(
      secretsBundleKey(HOST, sha),
      600,
    );
    sealed = `age:${Buffer.from(await encryptSecret(new TextEncoder().encode(url), to)).toString("base64")}`;
  });
  afterAll(async () => {
    await store?.close();
    await s3?.close();
  });

  const withSecrets = (system: ExampleSystem, sha256: string): SsmParameterValues => ({
    StorePath: systems[system],
    Substituters: server.url,
    TrustedPublicKeys: publicKey,
    SecretsUrl: sealed,
    SecretsSha256: sha256,
  });

  it("installs the host's secrets from the URL, with owner and mode, before its service starts", async () => {
    // A system the host does not run, so that the service starts anew.
    const current = (await status()).current;
    const next: ExampleSystem = current === systems["web-v2"] ? "web-v1" : "web-v2";
    const { code, result, stderr } = await runDocument(withSecrets(next, sha));
    expect(code, stderr).toBe(0);
    expect(result).toMatchObject({ ok: true, command: "activate" });
    const kept = await onHost(
      "for f in web-token db-password; do stat -c '%U:%G %a' /run/keys/$f; cat /run/keys/$f; echo; done",
    );
    expect(kept.stdout.trim().split("\n")).toEqual([
      "root:nogroup 440",
      TOKEN,
      "nobody:root 400",
      PASSWORD,
    ]);
    // The service read its token as it started.
    const served = await run("curl", ["-s", "--max-time", "5", `http://${address}/secret`]);
    const digest = createHash("sha256").update(TOKEN).digest("hex");
    expect(JSON.parse(served.stdout)).toEqual({ sha256: digest });
    expect((await status()).secrets).toMatch(/^[0-9a-f]{64}$/);
    // What SSM is sent holds neither a secret nor a ciphertext; the store holds no plaintext.
    const parameters = JSON.stringify(withSecrets(next, sha));
    // Nor the URL that fetches the bundle: only the host's key opens it.
    expect(parameters).not.toContain(new URL(url).pathname);
    expect(parameters).not.toContain("X-Amz-Signature");
    for (const line of bundle.trim().split("\n").slice(1)) {
      expect(parameters).not.toContain(line.split(" ").at(-1) as string);
    }
    for (const secret of [TOKEN, PASSWORD]) {
      expect(parameters).not.toContain(secret);
      expect(stderr).not.toContain(secret);
      expect(await filesHolding(s3Dir, secret)).toEqual([]);
      expect(await filesHolding(join(labsDir, LAB, "hosts", HOST, "nix"), secret)).toEqual([]);
    }
  });

  it("keeps the presigned URL out of every process's arguments on the host", async () => {
    // A curl first on PATH that writes down its own arguments and those of every process it
    // descends from (the document's sh, activate.sh, the bounded fetch), then runs curl.
    const shim = [
      "#!/bin/sh",
      "p=$$",
      'while [ "$p" -gt 1 ]; do',
      "  tr '\\0' ' ' </proc/$p/cmdline >>/tmp/nixship-argv.log; echo >>/tmp/nixship-argv.log",
      "  p=$(awk '/^PPid:/ { print $2 }' /proc/$p/status)",
      "done",
      'exec /usr/bin/curl "$@"',
    ].join("\n");
    const installed = await onHost(
      `rm -f /tmp/nixship-argv.log && mkdir -p /tmp/nixship-shim && cat >/tmp/nixship-shim/curl <<'EOF'\n${shim}\nEOF\nchmod 755 /tmp/nixship-shim/curl`,
    );
    expect(installed.code, installed.stderr).toBe(0);
    const current = (await status()).current;
    const next: ExampleSystem = current === systems["web-v2"] ? "web-v1" : "web-v2";
    const document = renderRunCommand(
      ssmDocument(),
      withSecrets(next, sha) as Record<string, string>,
    );
    const r = await onHost(`PATH=/tmp/nixship-shim:$PATH\nexport PATH\n${document}`);
    expect(r.code, r.stderr).toBe(0);
    expect(parseActivationResult(r.stdout, HOST)).toMatchObject({ ok: true, command: "activate" });
    const seen = (
      await onHost("cat /tmp/nixship-argv.log; rm -rf /tmp/nixship-argv.log /tmp/nixship-shim")
    ).stdout;
    const signature = new URL(url).searchParams.get("X-Amz-Signature") ?? "";
    expect(signature).toMatch(/^[0-9a-f]{64}$/);
    expect(seen).not.toContain(signature);
    expect(seen).not.toContain(new URL(url).pathname);
    // The shim did run for the fetch, under activate.sh.
    expect(seen).toMatch(/^\/bin\/sh \/tmp\/nixship-shim\/curl .*-K -/m);
    expect(seen).toContain("--secrets-url -");
  });

  it("refuses a bundle whose digest is not the one in the command, changing nothing", async () => {
    const { code, result } = await runDocument(withSecrets("web-v1", "0".repeat(64)));
    expect(code).toBe(ACTIVATE_EXIT.secrets);
    expect(result).toMatchObject({ ok: false, phase: "secrets" });
    expect("message" in result ? result.message : "").toContain("sha256");
    const kept = await onHost("cat /run/keys/web-token");
    expect(kept.stdout.trim()).toBe(TOKEN);
  });
});

describe("reboots through the SSM document, as SSM's agent runs it (exit 194)", () => {
  /** SSM's agent: runs the document; on exit 194 it reboots the instance and runs it again. */
  async function runAsSsmAgent(parameters: SsmParameterValues) {
    const first = await runDocument(parameters);
    if (first.code !== 194) return { first, second: undefined };
    const rebooted = await nixship(["lab", "reboot", HOST, "--name", LAB], { env: env() });
    expect(rebooted.code, rebooted.stderr).toBe(0);
    return { first, second: await runDocument(parameters) };
  }

  /** The host's status once it answers from a boot other than `boot` (within 60 s). */
  async function nextBoot(boot: string | undefined) {
    const end = Date.now() + 60_000;
    for (;;) {
      const r = await runDocument({ Command: "status" }).catch(() => undefined);
      const s = answerOf(r?.result, "status");
      if (s?.boot && s.boot.id !== boot) return s;
      if (Date.now() > end) throw new Error("the host did not come back from its reboot");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  const reboot = (system: ExampleSystem, token: string) => ({
    StorePath: systems[system],
    Action: "boot",
    RebootToken: token,
    Substituters: server.url,
    TrustedPublicKeys: publicKey,
    HealthChecks: encodeHealthChecks([{ run: HEALTHY, timeout: 10 }]),
  });

  it("reboots into a new kernel, judges the boot after it, and confirm-boot keeps it", async () => {
    // The instance booted its profile's system.
    const profile = (await status()).profile;
    const booted = await nixship(["lab", "reboot", HOST, "--name", LAB], { env: env() });
    expect(booted.code, booted.stderr).toBe(0);
    expect((await status()).booted).toBe(profile);
    const { first, second } = await runAsSsmAgent(reboot("web-v4", "ssm1"));
    expect(first.code, first.stderr).toBe(194);
    expect(first.result).toMatchObject({ ok: true, command: "activate", result: "rebooting" });
    expect(second?.code, second?.stderr).toBe(0);
    expect(second?.result).toMatchObject({
      ok: true,
      command: "after-boot",
      result: "booted",
      booted: systems["web-v4"],
    });
    const kept = await runDocument({ Command: "confirm-boot", RebootToken: "ssm1" });
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.result).toMatchObject({ ok: true, command: "confirm-boot", result: "confirmed" });
    const s = await status();
    expect(s).toMatchObject({ booted: systems["web-v4"], current: systems["web-v4"] });
    expect(s.reboot?.due).toBe(false);
    expect(s.boot?.pending).toBeNull();
    expect(await served()).toBe("web-v4");
  });

  it("a check that fails after the boot: back on the previous generation, and rebooted into it", async () => {
    const before = await status();
    const { first, second } = await runAsSsmAgent(reboot("web-v4-broken", "ssm2"));
    expect(first.code, first.stderr).toBe(194);
    expect(second?.code).toBe(ACTIVATE_EXIT.health);
    expect(second?.result).toMatchObject({
      ok: false,
      command: "after-boot",
      phase: "health",
      rolledBack: true,
      rebooting: true,
      booted: systems["web-v4-broken"],
    });
    // The instance reboots itself into web-v4 (its systemctl, the lab host's power button).
    const after = await nextBoot(
      second?.result && "bootId" in second.result ? second.result.bootId : undefined,
    );
    expect(after).toMatchObject({ booted: systems["web-v4"], current: systems["web-v4"] });
    expect(after.generations.map((g) => g.path)).toEqual(before.generations.map((g) => g.path));
    expect(await served()).toBe("web-v4");
  });
});

describe("a host with pinned trust runs its own nixship-activate, not the document's script", () => {
  let pinnedSystem: string;

  beforeAll(async () => {
    // A system that installs nixship-activate with this cache's URL and key (nixosModules.host's
    // text), pushed signed into the cache the host substitutes from.
    const root = new URL("..", import.meta.url).pathname;
    const expr = `import ${root}examples/system.nix {
      system = builtins.currentSystem; name = "ssm-pinned"; version = "ssm-pinned";
      checks = { commands = [ { run = "true"; timeout = 5; } ]; };
      pinned = {
        substituters = [ ${JSON.stringify(server.url)} ];
        trustedKeys = [ ${JSON.stringify(publicKey)} ];
        script = ${root}dist/host/activate.sh;
        text = import ${root}packaging/nixos/nixship-activate.nix;
      };
    }`;
    const built = await run("nix-build", ["--no-out-link", "--expr", expr]);
    expect(built.code, built.stderr).toBe(0);
    pinnedSystem = built.stdout.trim();
    const push = await nixship([
      "push",
      pinnedSystem,
      "--to",
      `file://${join(work, "cache")}`,
      "--key",
      join(work, "cache.sec"),
    ]);
    expect(push.code, push.stderr).toBe(0);
  });

  it("answers with the host's pinned trust, ignores the document's, and runs only declared checks", async () => {
    const before = (await status()).current;
    // The first deploy of it goes through the embedded script, with the document's trust.
    const first = await runDocument({
      StorePath: pinnedSystem,
      Substituters: server.url,
      TrustedPublicKeys: publicKey,
      HealthChecks: encodeHealthChecks([{ run: "true", timeout: 5 }]),
    });
    expect(first.code, first.stderr).toBe(0);
    const s = await status();
    expect(s.current).toBe(pinnedSystem);
    expect(s.pinned).toEqual({ keys: ["ssm-lab-cache-1"], substituters: [server.url] });
    expect(s.pinnedActivator).toBe(true);
    // Another key and no substituter in the command change nothing; a check the system does not
    // declare is refused before anything changes.
    const refused = await runDocument({
      StorePath: systems["web-v1"],
      Substituters: "",
      TrustedPublicKeys: "other-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=",
      HealthChecks: encodeHealthChecks([{ run: "touch /root/owned", timeout: 5 }]),
    });
    expect(refused.code).toBe(2);
    expect(refused.result).toMatchObject({ ok: false, command: "activate", phase: "realise" });
    expect(refused.stderr).toContain("the --substituter and --trusted-key given are ignored");
    expect((await status()).current).toBe(pinnedSystem);
    // Not back to what it ran before: a system without nixship-activate would unpin the host,
    // and the next command would run the document's script with the sender's trust.
    const back = await runDocument({ Command: "rollback" });
    expect(back.code).toBe(9);
    expect(back.result).toMatchObject({ ok: false, command: "rollback" });
    expect(back.stderr + JSON.stringify(back.result)).toContain(
      `${before} has no sw/bin/nixship-activate (nixship's nixosModules.host): this host's trust is pinned`,
    );
    expect((await status()).current).toBe(pinnedSystem);
  });
});
