// The host module's user-data (terraform/modules/host/user-data.sh.tftpl),
// rendered with exactly the variables main.tf passes to templatefile, passes `shellcheck -s sh`
// and is idempotent on a real lab host. The host realises a nixship package from a signed
// directory cache, writes the agent's config, applies the channel's release with
// `nixship agent --once` and starts the agent; a second run changes nothing. Then: odd values
// reach the config intact, a reboot starts the agent again without --once, and a system that
// runs the agent itself (its own nixship-agent.service) is left alone. Lab hosts have no
// systemd, so stand-ins for systemctl and systemd-run come first on the script's PATH: the
// systemd-run one records its arguments and really starts the agent in the background.
// main.tf puts the SSH part (ssh.sh.tftpl) before it only when an SSH input asks for
// it, and the fetch (fetch.sh.tftpl) only for a store with a key prefix; together they still
// pass shellcheck within EC2's 16 KiB, a script over that without its comment lines (the SSH
// part on a host: terraform-host-ssh.test.ts, terraform-host-key-s3.test.ts; the fetch:
// terraform-host-prefixed-store.test.ts).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { parse } from "@cdktf/hcl2json";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AGENT_CONFIG_DEFAULTS,
  DEFAULT_AGENT_CONFIG,
  parseAgentConfig,
} from "../src/agent/config.js";
import type { StatusRecord } from "../src/status/status.js";
import { readStatus } from "../src/status/status-store.js";
import { openStore } from "../src/store/url.js";
import { type CliRun, NIXSHIP_BIN, nixship, run, runOk } from "../support/cli.js";
import {
  base64Bytes,
  COMMENT_LINE_HCL,
  USER_DATA_LIMIT,
  userDataOf,
} from "./support/host-user-data.js";
import { processAlive } from "./support/process-alive.js";
import { renderTemplate, type TemplateValue } from "./support/tftpl.js";

const MODULE_DIR = join(dirname(NIXSHIP_BIN), "..", "..", "terraform", "modules", "host");
const TEMPLATE = join(MODULE_DIR, "user-data.sh.tftpl");
const SSH_TEMPLATE = join(MODULE_DIR, "ssh.sh.tftpl");
const FETCH_TEMPLATE = join(MODULE_DIR, "fetch.sh.tftpl");
const LAB = "tfh";
const HOST = "tfh1";
const CHANNEL = "production";
/** What main.tf passes to ssh.sh.tftpl (local.ssh_user_data_vars; its values are evaluated in terraform-host-inputs.test.ts). */
const SSH_TEMPLATE_VARS = [
  "host_name",
  "ssh_host_private_key",
  "ssh_host_public_key",
  "ssh_authorized_keys",
  "host_key_store",
  "host_key_url",
  "host_key_region",
];
/** What main.tf passes to fetch.sh.tftpl (local.fetch_user_data_vars; evaluated in terraform-host-inputs.test.ts). */
const FETCH_TEMPLATE_VARS = [
  "host_name",
  "nixship_package",
  "cache_public_keys",
  "store_http_url",
  "store_region",
  "fetch_max_paths",
  "fetch_max_bytes",
];
/** What main.tf must pass to templatefile: each template variable and the module input behind it. */
const TEMPLATE_VARS: Record<string, string> = {
  host_name: "var.name",
  nixship_package: "var.nixship_package",
  store_url: "var.store_url",
  channel: "var.channel",
  release_public_keys: "var.release_public_keys",
  cache_public_keys: "var.cache_public_keys",
  poll_interval: "var.poll_interval",
};
/** The PATH `lab exec` gives a command. */
const LAB_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The checkout (dist/, node_modules/) the host's nixship package runs. */
const REPO = join(dirname(NIXSHIP_BIN), "..", "..");

let work: string;
let lab: { dir: string };
let storeUrl: string;
let cachePublic: string;
let releasePublic: string;
let nixshipPackage: string;
let holder: ChildProcess | undefined;
let holderPid: number;
const env = () => ({ NIXSHIP_LAB_DIR: join(work, "labs") });
const shims = () => join(work, "shims");
const invocationsLog = () => join(work, "invocations.log");
/** While this file exists, the package's `agent --once` installs nixship-agent.service. */
const onceInstallsUnit = () => join(work, "once-installs-unit");

/** The template variables for this lab; `overrides` replaces some. */
function templateValues(
  overrides: Record<string, TemplateValue> = {},
): Record<string, TemplateValue> {
  return {
    host_name: HOST,
    nixship_package: nixshipPackage,
    store_url: storeUrl,
    channel: CHANNEL,
    release_public_keys: [releasePublic],
    cache_public_keys: [cachePublic],
    poll_interval: 5,
    ...overrides,
  };
}

/** The SSH part's values for a host that generates no key, has no keys and publishes nothing. */
function sshValues(overrides: Record<string, TemplateValue> = {}): Record<string, TemplateValue> {
  return {
    ...Object.fromEntries(SSH_TEMPLATE_VARS.map((name) => [name, ""])),
    host_name: HOST,
    ...overrides,
  };
}

async function render(file: string, values: Record<string, TemplateValue>): Promise<string> {
  const rendered = renderTemplate(await readFile(file, "utf8"), values, file);
  // Every value main.tf passes is used: none is left over from an older template.
  expect([...rendered.used].sort()).toEqual(Object.keys(values).sort());
  return rendered.text;
}

/**
 * The user-data of an agent host as main.tf makes it: the SSH part if asked for, the fetch for a
 * prefixed store, then this; over 16 KiB, without its comment lines.
 */
async function renderUserData(
  values: Record<string, TemplateValue>,
  ssh?: Record<string, TemplateValue>,
  fetch?: Record<string, TemplateValue>,
): Promise<string> {
  return userDataOf([
    ssh === undefined ? "" : await render(SSH_TEMPLATE, ssh),
    fetch === undefined ? "" : await render(FETCH_TEMPLATE, fetch),
    await render(TEMPLATE, values),
  ]);
}

/** Runs `script` (sh) in the host's view: its namespaces plus the test's /etc and /var/lib. */
function inHost(script: string, path = LAB_PATH): Promise<CliRun> {
  return nixship(
    [
      "lab",
      "exec",
      HOST,
      "--",
      "nsenter",
      "-t",
      String(holderPid),
      "-m",
      "--",
      "env",
      `PATH=${path}`,
      "sh",
      "-c",
      script,
    ],
    { env: env() },
  );
}

/** Runs the rendered user-data as amazon-init would (as root, on its own), shims first on PATH. */
async function runUserData(text: string, name: string): Promise<CliRun> {
  const file = join(work, `${name}.sh`);
  await writeFile(file, text, { mode: 0o755 });
  return inHost(`exec sh ${file}`, `${shims()}:${LAB_PATH}`);
}

/** The stand-ins' calls so far: one entry per call, its program and arguments. */
async function calls(program: "systemd-run" | "systemctl"): Promise<string[][]> {
  const text = await readFile(join(shims(), "calls.log"), "utf8").catch(() => "");
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split("\x1f"))
    .filter((c) => c[0] === program)
    .map((c) => c.slice(1));
}

/** Each run of the package's bin/nixship, as its arguments. */
async function invocations(): Promise<string[]> {
  return (await readFile(invocationsLog(), "utf8").catch(() => "")).split("\n").filter(Boolean);
}

async function agentPid(): Promise<number | undefined> {
  const text = await readFile(join(shims(), "nixship-agent.pid"), "utf8").catch(() => "");
  return /^\d+$/.test(text.trim()) ? Number(text.trim()) : undefined;
}

/** Waits (bounded) until `check` holds. */
async function until(what: string, check: () => Promise<boolean>, seconds = 20): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** inode, mtime (ns) and size of a file in the host's view, or "absent". */
async function fileStamp(path: string): Promise<string> {
  const r = await inHost(`stat -c '%i %y %s' ${path} 2>/dev/null || echo absent`);
  return r.stdout.trim();
}

async function hostFile(path: string): Promise<string> {
  const r = await inHost(`cat ${path}`);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
}

async function statusRecord(): Promise<StatusRecord | undefined> {
  const store = await openStore(storeUrl);
  try {
    return await readStatus(store, HOST);
  } finally {
    await store.close();
  }
}

/** The test's stand-ins for systemctl and systemd-run (lab hosts run no systemd). */
async function writeShims(): Promise<void> {
  const dir = shims();
  await mkdir(dir, { recursive: true });
  const record = `{ printf '%s' "$(basename "$0")"; for a in "$@"; do printf '\\037%s' "$a"; done; printf '\\n'; } >>${dir}/calls.log`;
  await writeFile(
    join(dir, "systemd-run"),
    `#!/bin/sh
# systemd-run stand-in: records its arguments, then starts the command as a transient service
# would: in the background, in a session of its own, with --setenv applied; its pid goes where
# the systemctl stand-in looks.
set -eu
${record}
unit=
for a in "$@"; do
  case $a in
    --unit=*) unit=\${a#--unit=} ;;
    --setenv=*) export "\${a#--setenv=}" ;;
    --*) ;;
    *) break ;;
  esac
  shift
done
[ -n "$unit" ] || { echo "systemd-run stand-in: no --unit" >&2; exit 1; }
setsid "$@" >${dir}/"$unit".log 2>&1 </dev/null &
echo "$!" >${dir}/"$unit".pid
`,
    { mode: 0o755 },
  );
  await writeFile(
    join(dir, "systemctl"),
    `#!/bin/sh
# systemctl stand-in: answers is-active from whether the process systemd-run started lives.
set -eu
${record}
[ "\${1:-}" = is-active ] || { echo "systemctl stand-in: only is-active, not: $*" >&2; exit 1; }
shift
quiet=false
if [ "\${1:-}" = --quiet ]; then quiet=true; shift; fi
pid=$(cat ${dir}/"$1".pid 2>/dev/null || true)
state=inactive
if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then
  [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -c1)" = Z ] || state=active
fi
$quiet || echo "$state"
[ "$state" = active ] || exit 3
`,
    { mode: 0o755 },
  );
}

/** A small nixship package: bin/nixship records its arguments and runs the checkout's CLI. */
async function buildNixshipPackage(binInHost: string): Promise<string> {
  const dir = join(work, "package");
  await mkdir(dir);
  await writeFile(
    join(dir, "nixship.sh"),
    `#!/bin/sh
# nixship for the user-data test: records each run, then runs the checkout's CLI.
printf '%s\\n' "$*" >>${invocationsLog()}
# Stands in for a release whose system imports the nixship-agent NixOS module: its switch
# installs the unit. Only while the test asks for it.
if [ "$1 $2" = "agent --once" ] && [ -e ${onceInstallsUnit()} ]; then
  mkdir -p /etc/systemd/system
  printf '[Service]\\nExecStart=/bin/true\\n' >/etc/systemd/system/nixship-agent.service
fi
exec ${process.execPath} ${binInHost} "$@"
`,
  );
  await writeFile(
    join(dir, "default.nix"),
    `derivation {
  name = "nixship-user-data-test";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "mkdir -p $out/bin && printf '%s' \\"$text\\" > $out/bin/nixship && chmod 0555 $out/bin/nixship" ];
  text = builtins.readFile ./nixship.sh;
  PATH = "/usr/bin:/bin";
}
`,
  );
  return (await runOk("nix-build", [join(dir, "default.nix"), "--no-out-link"])).trim();
}

/**
 * Starts a process in the host that holds a mount namespace of its own, where /etc is an
 * overlay (the script writes /etc/nixship; the machine's /etc stays untouched) and /var/lib is
 * the test's. Every run of the script enters it, as every boot finds the same disk.
 */
async function startHostView(): Promise<void> {
  const root = join(work, "host");
  for (const d of ["etc-upper", "etc-work", "var-lib", "etc-nix"]) {
    await mkdir(join(root, d), { recursive: true });
  }
  const setup = [
    "set -e",
    // The host's own /etc/nix, which the overlay would hide.
    'mount --bind /etc/nix "$1/etc-nix"',
    'mount -t overlay nixship-tfh-etc -o "lowerdir=/etc,upperdir=$1/etc-upper,workdir=$1/etc-work" /etc',
    'mount --bind "$1/etc-nix" /etc/nix',
    'mount --bind "$1/var-lib" /var/lib',
    'echo "holder $$"',
    "exec sleep 3600",
  ].join("\n");
  const child = spawn(
    process.execPath,
    [
      NIXSHIP_BIN,
      ...["lab", "exec", HOST, "--", "unshare", "--mount", "--propagation", "private"],
      ...["sh", "-c", setup, "holder", root],
    ],
    { env: { ...process.env, ...env() }, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  holder = child;
  let out = "";
  let err = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  await until(`the host view to start (stderr: ${err})`, async () => {
    if (child.exitCode !== null) throw new Error(`the host view ended: ${err}`);
    return /holder \d+/.test(out);
  });
  holderPid = Number(/holder (\d+)/.exec(out)?.[1]);
}

beforeAll(async () => {
  // Not under /tmp: each lab host has a private /tmp, and the host must see these files.
  await mkdir("/var/tmp", { recursive: true });
  work = await mkdtemp("/var/tmp/nixship-tfh-test-");
  const repoInHost = join(work, "repo");
  await mkdir(repoInHost);
  const bound = await run("mount", ["--bind", REPO, repoInHost]);
  expect(bound.code, bound.stderr).toBe(0);
  const up = await nixship(["lab", "up", "1", "--name", LAB, "--json"], { env: env() });
  expect(up.code, up.stderr).toBe(0);
  lab = JSON.parse(up.stdout) as typeof lab;
  const fleetFile = join(lab.dir, "nixship.json");
  const cacheKeyFile = join(lab.dir, "cache.sec");
  storeUrl = `file://${join(lab.dir, "cache")}`;
  cachePublic = (await nixship(["key", "public", cacheKeyFile])).stdout.trim();
  const releaseKeyFile = join(work, "release.sec");
  const gen = await nixship([
    "key",
    "generate",
    "--name",
    "tfh-release-1",
    "--out",
    releaseKeyFile,
  ]);
  expect(gen.code, gen.stderr).toBe(0);
  releasePublic = gen.stdout.trim();

  // The nixship package, pushed signed into the fleet's cache, where the host finds it.
  nixshipPackage = await buildNixshipPackage(join(repoInHost, relative(REPO, NIXSHIP_BIN)));
  const push = await nixship(["push", nixshipPackage, "--to", storeUrl, "--key", cacheKeyFile]);
  expect(push.code, push.stderr).toBe(0);

  // A release of the channel naming the host's system, for `agent --once` to apply.
  const doc = JSON.parse(await readFile(fleetFile, "utf8")) as {
    hosts: Record<string, { delivery?: string; sshHost?: string }>;
    [k: string]: unknown;
  };
  for (const h of Object.values(doc.hosts)) {
    h.delivery = "agent";
    delete h.sshHost;
  }
  doc.releases = { channel: CHANNEL, publicKeys: [releasePublic] };
  await writeFile(fleetFile, JSON.stringify(doc, null, 2));
  const published = await nixship([
    ...["release", "publish", "--fleet", fleetFile, "--key", cacheKeyFile],
    ...["--release-key", releaseKeyFile, "--json"],
  ]);
  expect(published.code, published.stderr).toBe(0);

  await writeShims();
  await startHostView();
});

afterAll(async () => {
  const pid = await agentPid();
  if (pid !== undefined && processAlive(pid)) process.kill(pid, "SIGTERM");
  if (holder?.pid !== undefined && holder.exitCode === null) process.kill(-holder.pid, "SIGTERM");
  await nixship(["lab", "down", "--name", LAB], { env: env() });
  await run("umount", [join(work, "repo")]);
  await rm(work, { recursive: true, force: true });
});

describe("main.tf renders user-data.sh.tftpl (and ssh.sh.tftpl before it)", () => {
  it("with exactly the variables the templates take; the SSH part only when asked for, the fetch only for a prefixed store, the agent's only with the agent", async () => {
    const main = (await parse("main.tf", await readFile(join(MODULE_DIR, "main.tf"), "utf8"))) as {
      locals?: Record<string, unknown>[];
      resource?: { aws_instance?: Record<string, { user_data?: string }[]> };
    };
    const local = (name: string) => (main.locals ?? []).find((l) => name in l)?.[name];
    const instances = Object.values(main.resource?.aws_instance ?? {}).flat();
    expect(instances).toHaveLength(1);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of an expression.
    expect(instances[0]?.user_data).toBe("${local.user_data}");
    // An agent host without SSH inputs or a prefix gets user-data.sh.tftpl alone.
    const squash = (text: unknown) => String(text).replace(/\s+/g, "");
    expect(squash(local("user_data_script"))).toBe(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of an expression.
      '${var.agent_enabled||local.ssh_user_data_needed?join("",[local.ssh_user_data_needed?templatefile("${path.module}/ssh.sh.tftpl",local.ssh_user_data_vars):"",local.fetch_needed?templatefile("${path.module}/fetch.sh.tftpl",local.fetch_user_data_vars):"",var.agent_enabled?templatefile("${path.module}/user-data.sh.tftpl",local.user_data_vars):"",]):null}',
    );
    // Kept byte for byte within 16 KiB, else without its comment lines: what userDataOf does.
    // Bytes, read from the base64 (length() counts characters): what base64Bytes does.
    const bytesOf = (b64: string) =>
      `length(${b64})/4*3-(endswith(${b64},"==")?2:endswith(${b64},"=")?1:0)`;
    expect(squash(local("user_data_script_base64"))).toBe(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: hcl2json's form of an expression.
      '${local.user_data_script==null?"":base64encode(local.user_data_script)}',
    );
    expect(squash(local("user_data_script_bytes"))).toBe(
      `\${${bytesOf("local.user_data_script_base64")}}`,
    );
    expect(squash(local("user_data"))).toBe(
      squash(
        `\${(local.user_data_script == null ? null : local.user_data_script_bytes <= ${USER_DATA_LIMIT} ? local.user_data_script : replace(local.user_data_script, "${COMMENT_LINE_HCL}", ""))}`,
      ),
    );
    expect(squash(local("user_data_bytes"))).toBe(`\${${bytesOf("local.user_data_base64")}}`);
    // The formula is the byte count, multi-byte characters and every padding alike.
    for (const text of ["", "a", "ab", "abc", "é", "key comment ✓ 🔑"]) {
      expect([text, base64Bytes(text)]).toEqual([text, Buffer.byteLength(text)]);
    }
    expect(Object.keys(local("ssh_user_data_vars") as object).sort()).toEqual(
      [...SSH_TEMPLATE_VARS].sort(),
    );
    expect(Object.keys(local("fetch_user_data_vars") as object).sort()).toEqual(
      [...FETCH_TEMPLATE_VARS].sort(),
    );
    expect(local("user_data_vars")).toEqual(
      Object.fromEntries(Object.entries(TEMPLATE_VARS).map(([k, v]) => [k, `\${${v}}`])),
    );
    expect(Object.keys(templateValues()).sort()).toEqual(Object.keys(TEMPLATE_VARS).sort());
    // Bootstrap changes must not replace a running host; IMDSv2 only.
    expect(main.resource?.aws_instance).toMatchObject({
      host: [
        {
          user_data_replace_on_change: false,
          metadata_options: [{ http_tokens: "required" }],
          root_block_device: [{ encrypted: true }],
        },
      ],
    });
  });

  it("into a POSIX sh script that shellcheck finds nothing in, within EC2's 16 KiB", async () => {
    // Everything at once: a generated key, three authorized keys, and the agent.
    const key = join(work, "shellcheck-host-key");
    await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key]);
    const pub = (await readFile(`${key}.pub`, "utf8")).trim();
    const ssh = sshValues({
      ssh_host_private_key: await readFile(key, "utf8"),
      ssh_host_public_key: pub,
      ssh_authorized_keys: [1, 2, 3].map((i) => `${pub} admin${i}@example.org`).join("\n"),
    });
    const published = sshValues({
      host_key_store: "s3",
      host_key_url: `https://fleet-cache.s3.eu-west-1.amazonaws.com/fleet/status/host-keys/${HOST}.pub`,
      host_key_region: "eu-west-1",
    });
    // A store with a key prefix: the fetch comes before the bootstrap.
    const prefixed = templateValues({ store_url: "s3://fleet-cache/fleet?region=eu-west-1" });
    const fetch = {
      host_name: HOST,
      nixship_package: nixshipPackage,
      cache_public_keys: [cachePublic],
      store_http_url: "https://fleet-cache.s3.eu-west-1.amazonaws.com/fleet",
      store_region: "eu-west-1",
      fetch_max_paths: 2000,
      fetch_max_bytes: 4294967296,
    };
    const everything = await renderUserData(prefixed, ssh, fetch);
    // That one is over 16 KiB as written, so main.tf leaves out its comment lines.
    expect(everything).not.toContain("\n# ");
    for (const [name, text] of [
      ["agent", await renderUserData(templateValues(), ssh)],
      ["ssh-only", await render(SSH_TEMPLATE, published)],
      ["prefixed", await renderUserData(prefixed, undefined, fetch)],
      ["prefixed-ssh", everything],
    ] as const) {
      expect(text.startsWith("#!/bin/sh\n")).toBe(true);
      expect(Buffer.byteLength(text)).toBeLessThan(USER_DATA_LIMIT);
      const file = join(work, `shellcheck-${name}.sh`);
      await writeFile(file, text);
      const r = await run("shellcheck", ["-s", "sh", "-f", "gcc", file]);
      expect(r.stdout + r.stderr, name).toBe("");
      expect(r.code).toBe(0);
    }
  });
});

describe("the user-data on a lab host", () => {
  let firstConfig: string;
  let firstPid: number | undefined;

  it("1. installs nixship from the cache, writes the config, applies the release and starts the agent", async () => {
    const valid = await inHost(`nix-store --check-validity ${nixshipPackage}`);
    expect(valid.code, "the package is not in the host's store before").not.toBe(0);

    const r = await runUserData(await renderUserData(templateValues()), "first");
    expect(r.code, r.stdout + r.stderr).toBe(0);

    // The package came from the cache (signatures required) into the host's store, rooted.
    expect((await inHost(`nix-store --check-validity ${nixshipPackage}`)).code).toBe(0);
    const root = await inHost("readlink /nix/var/nix/gcroots/nixship-bootstrap");
    expect(root.stdout.trim()).toBe(nixshipPackage);

    // The config the agent reads, with the module's values and the agent's defaults.
    firstConfig = await hostFile(DEFAULT_AGENT_CONFIG);
    expect(parseAgentConfig(firstConfig, DEFAULT_AGENT_CONFIG)).toEqual({
      store: storeUrl,
      channel: CHANNEL,
      host: HOST,
      releaseKeys: [releasePublic],
      cacheKeys: [cachePublic],
      ...AGENT_CONFIG_DEFAULTS,
      pollInterval: 5,
    });

    // `agent --once` applied the channel's release: the host reported success.
    const record = await statusRecord();
    expect(record).toMatchObject({ host: HOST, mode: "agent", channel: CHANNEL, state: "success" });
    expect(record?.current).toBe(record?.desired);
    const current = await inHost("readlink -f /run/current-system");
    expect(current.stdout.trim()).toBe(record?.desired);

    // Then the agent, started once as the transient unit nixship-agent, runs.
    const started = await calls("systemd-run");
    expect(started).toHaveLength(1);
    const args = started[0] ?? [];
    expect(args).toContain("--unit=nixship-agent");
    expect(args).toContain("--property=Restart=always");
    expect(args.slice(-4)).toEqual([
      `${nixshipPackage}/bin/nixship`,
      "agent",
      "--config",
      DEFAULT_AGENT_CONFIG,
    ]);
    await until("the agent to start", async () => (await invocations()).length === 2);
    expect(await invocations()).toEqual([
      `agent --once --config ${DEFAULT_AGENT_CONFIG}`,
      `agent --config ${DEFAULT_AGENT_CONFIG}`,
    ]);
    firstPid = await agentPid();
    expect(firstPid).toBeDefined();
    await until("the agent to follow its channel", async () =>
      (await readFile(join(shims(), "nixship-agent.log"), "utf8")).includes(
        `${HOST} following channel ${CHANNEL}`,
      ),
    );
    expect(processAlive(firstPid as number)).toBe(true);
  });

  it("2. run again, changes nothing: same config file, no second --once, no second start", async () => {
    const configBefore = await fileStamp(DEFAULT_AGENT_CONFIG);
    const stateBefore = await fileStamp(`${AGENT_CONFIG_DEFAULTS.stateDir}/state.json`);
    const rootBefore = await inHost("stat -c '%i %y' /nix/var/nix/gcroots/nixship-bootstrap");
    const recordBefore = await statusRecord();
    expect(configBefore).not.toBe("absent");
    expect(stateBefore).not.toBe("absent");

    const r = await runUserData(await renderUserData(templateValues()), "second");
    expect(r.code, r.stdout + r.stderr).toBe(0);

    expect(await fileStamp(DEFAULT_AGENT_CONFIG)).toBe(configBefore);
    expect(await hostFile(DEFAULT_AGENT_CONFIG)).toBe(firstConfig);
    expect(await fileStamp(`${AGENT_CONFIG_DEFAULTS.stateDir}/state.json`)).toBe(stateBefore);
    expect((await inHost("stat -c '%i %y' /nix/var/nix/gcroots/nixship-bootstrap")).stdout).toBe(
      rootBefore.stdout,
    );
    expect(await statusRecord()).toEqual(recordBefore);
    expect(await calls("systemd-run")).toHaveLength(1);
    expect(await invocations()).toHaveLength(2);
    expect(await agentPid()).toBe(firstPid);
    expect(processAlive(firstPid as number)).toBe(true);
    // It asked whether the agent runs, which it does.
    expect((await calls("systemctl")).at(-1)).toEqual(["is-active", "nixship-agent"]);
  });

  it("3. writes values with quotes, spaces, $, & and ? into the config exactly", async () => {
    const marker = join(work, "executed");
    const odd = `file:///var/tmp/it's a "cache" \\ %s?fsync=false&x=$(touch ${marker})&y=\`touch ${marker}\`;z=1`;
    const text = await renderUserData(templateValues({ store_url: odd }));
    const file = join(work, "shellcheck-odd.sh");
    await writeFile(file, text);
    const check = await run("shellcheck", ["-s", "sh", "-f", "gcc", file]);
    expect(check.stdout + check.stderr).toBe("");

    const before = await fileStamp(DEFAULT_AGENT_CONFIG);
    const r = await runUserData(text, "odd");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const config = JSON.parse(await hostFile(DEFAULT_AGENT_CONFIG)) as { store: string };
    expect(config.store).toBe(odd);
    // A changed config is a new file, renamed into place; nothing in the value ran.
    expect(await fileStamp(DEFAULT_AGENT_CONFIG)).not.toBe(before);
    expect((await run("test", ["-e", marker])).code).toBe(1);
    // The agent runs, so nothing was applied or started.
    expect(await calls("systemd-run")).toHaveLength(1);
    expect(await invocations()).toHaveLength(2);
  });

  it("4. after a reboot (agent gone, state kept), starts the agent again, without --once", async () => {
    const pid = firstPid as number;
    process.kill(pid, "SIGTERM");
    await until("the agent to stop", async () => !processAlive(pid));
    await rm(join(shims(), "nixship-agent.log"));

    const r = await runUserData(await renderUserData(templateValues()), "reboot");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await hostFile(DEFAULT_AGENT_CONFIG)).toBe(firstConfig);
    expect(await calls("systemd-run")).toHaveLength(2);
    await until("the agent to start", async () => (await invocations()).length === 3);
    expect((await invocations()).at(-1)).toBe(`agent --config ${DEFAULT_AGENT_CONFIG}`);
    const pidNow = await agentPid();
    expect(pidNow).not.toBe(firstPid);
    await until("the agent to follow its channel", async () =>
      (await readFile(join(shims(), "nixship-agent.log"), "utf8")).includes(
        `${HOST} following channel ${CHANNEL}`,
      ),
    );
    expect(processAlive(pidNow as number)).toBe(true);
  });

  it("5. leaves the host alone once its system runs the agent itself", async () => {
    // The agent stops, and the host's system now installs nixship-agent.service and owns the
    // config (a link into /etc/static, as NixOS's environment.etc makes it).
    const pid = (await agentPid()) as number;
    process.kill(pid, "SIGTERM");
    await until("the agent to stop", async () => !processAlive(pid));
    const prepared = await inHost(
      [
        "set -e",
        `rm ${AGENT_CONFIG_DEFAULTS.stateDir}/state.json`,
        "mkdir -p /etc/systemd/system",
        "printf '[Service]\\nExecStart=/bin/true\\n' >/etc/systemd/system/nixship-agent.service",
        `ln -sfn /etc/static/nixship/agent.json ${DEFAULT_AGENT_CONFIG}`,
      ].join("\n"),
    );
    expect(prepared.code, prepared.stderr).toBe(0);
    const linkBefore = await inHost(`stat -c '%i %y' ${DEFAULT_AGENT_CONFIG}`);

    const r = await runUserData(await renderUserData(templateValues()), "managed");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect((await inHost(`readlink ${DEFAULT_AGENT_CONFIG}`)).stdout.trim()).toBe(
      "/etc/static/nixship/agent.json",
    );
    expect((await inHost(`stat -c '%i %y' ${DEFAULT_AGENT_CONFIG}`)).stdout).toBe(
      linkBefore.stdout,
    );
    expect(await fileStamp(`${AGENT_CONFIG_DEFAULTS.stateDir}/state.json`)).toBe("absent");
    expect(await calls("systemd-run")).toHaveLength(2);
    expect(await invocations()).toHaveLength(3);
  });
});

describe("the user-data on a lab host, when the first release runs the agent itself", () => {
  it("6. applies it with --once, then starts no agent of its own", async () => {
    // A fresh host as far as the agent goes: no unit, no config, no state.
    const prepared = await inHost(
      [
        "set -e",
        "rm /etc/systemd/system/nixship-agent.service",
        `rm -f ${DEFAULT_AGENT_CONFIG} ${AGENT_CONFIG_DEFAULTS.stateDir}/state.json`,
      ].join("\n"),
    );
    expect(prepared.code, prepared.stderr).toBe(0);
    await writeFile(onceInstallsUnit(), "");
    const before = await invocations();

    const r = await runUserData(await renderUserData(templateValues()), "release-runs-agent");
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(await invocations()).toEqual([
      ...before,
      `agent --once --config ${DEFAULT_AGENT_CONFIG}`,
    ]);
    expect(await fileStamp(`${AGENT_CONFIG_DEFAULTS.stateDir}/state.json`)).not.toBe("absent");
    expect(await fileStamp("/etc/systemd/system/nixship-agent.service")).not.toBe("absent");
    expect(await calls("systemd-run")).toHaveLength(2);
  });
});

describe("the user-data on a lab host whose store never answers", () => {
  it("gives up realising nixship at its deadline: a realise that hangs is killed, and the script ends", async () => {
    // Stand-ins: a nix-store whose realise hangs (a stalled mount), and a clock that jumps to
    // 3 s before the deadline once the deadline is set (the first `date +%s`).
    const dir = join(work, "hung-shims");
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "nix-store"),
      `#!/bin/sh
case $1 in
  --check-validity) exit 1 ;;
  --realise) echo $$ >${dir}/realise.pid; exec sleep 3600 ;;
esac
exec /usr/bin/nix-store "$@"
`,
      { mode: 0o755 },
    );
    await writeFile(
      join(dir, "date"),
      `#!/bin/sh
[ "$1" = +%s ] || exec /bin/date "$@"
n=$(cat ${dir}/date-calls 2>/dev/null || echo 0)
echo $((n + 1)) >${dir}/date-calls
now=$(/bin/date +%s)
if [ "$n" -eq 0 ]; then echo "$now"; else echo $((now + 1797)); fi
`,
      { mode: 0o755 },
    );
    const missing = "/nix/store/0000000000000000000000000000000b-nixship-never-there";
    const file = join(work, "hung.sh");
    await writeFile(file, await renderUserData(templateValues({ nixship_package: missing })), {
      mode: 0o755,
    });
    // A host whose system does not run the agent itself (test 6 left it so).
    const prepared = await inHost("rm -f /etc/systemd/system/nixship-agent.service");
    expect(prepared.code, prepared.stderr).toBe(0);
    const r = await inHost(`exec sh ${file}`, `${dir}:${shims()}:${LAB_PATH}`);
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(r.stderr).toContain(
      `cannot realise ${missing} from ${storeUrl} within 30 minutes and 5 attempts; giving up`,
    );
    // The realise that hung was ended by the deadline, not left running.
    const pid = (await readFile(join(dir, "realise.pid"), "utf8")).trim();
    expect(
      (await inHost(`kill -0 ${pid} 2>/dev/null && echo alive || echo gone`)).stdout.trim(),
    ).toBe("gone");
  });
});

describe("the test's template renderer", () => {
  // Template literals with \${ spell Terraform's ${...} here.
  it("renders as Terraform would, and refuses everything else", () => {
    expect(renderTemplate(`$\${x} %%{y} \${x} \${n}`, { x: "<&>", n: 30 }).text).toBe(
      `\${x} %{y} <&> 30`,
    );
    expect(renderTemplate(`\${jsonencode(x)}`, { x: ['<&>"\\\n'] }).text).toBe(
      '["\\u003c\\u0026\\u003e\\"\\\\\\n"]',
    );
    expect(renderTemplate(`\${join(" ", x)}`, { x: ["a", "b"] }).text).toBe("a b");
    expect(() => renderTemplate("%{ if x }a%{ endif }", { x: "1" })).toThrow(/directives/);
    expect(() => renderTemplate(`\${upper(x)}`, { x: "a" })).toThrow(/not supported/);
    expect(() => renderTemplate(`\${~ x ~}`, { x: "a" })).toThrow(/not supported/);
    expect(() => renderTemplate(`\${y}`, { x: "a" })).toThrow(/"y", which is not given/);
    expect(() => renderTemplate(`\${x}`, { x: ["a"] })).toThrow(/list/);
    expect(() => renderTemplate(`\${join(" ", x)}`, { x: "a" })).toThrow(/not a list/);
  });
});
