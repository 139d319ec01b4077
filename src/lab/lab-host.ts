// One lab host's processes: its files (an empty /nix, its own /etc/nix, sshd's keys and
// config), and its sshd, started inside the host's network namespace and a private mount
// namespace where /nix, /etc/nix, /run, /tmp and /root are the host's own, and so is its SSH host
// key at /etc/ssh/ssh_host_ed25519_key (what secrets are decrypted with). Everything a deploy
// runs on the host is a child of that sshd, so it sees the same namespaces.
import { spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { OperationError } from "../errors.js";
import { shellQuote } from "../util/shell-quote.js";
import { type HostNix, hostNixBind } from "./host-nix.js";
import { type HostShell, hostShellBind } from "./host-shell.js";
import { espDir } from "./lab-boot.js";
import type { LabHostLayout } from "./layout.js";
import { HOST_SSHD_DIR, hostNixConf, sshdConfig } from "./ssh-files.js";
import { makeEd25519Key } from "./ssh-keygen.js";

/** Creates the host's directory and files; returns its public host key ("ssh-ed25519 AAAA..."). */
export async function prepareHost(host: LabHostLayout, clientPublicKey: string): Promise<string> {
  await mkdir(join(host.dir, "nix"), { recursive: true });
  await mkdir(join(host.dir, "etc-nix"), { recursive: true });
  await writeFile(join(host.dir, "etc-nix", "nix.conf"), hostNixConf());
  const key = join(host.dir, "ssh_host_ed25519_key");
  await makeEd25519Key(key, host.name, `make the host key of ${host.name}`);
  await writeFile(join(host.dir, "authorized_keys"), clientPublicKey, { mode: 0o600 });
  await writeFile(join(host.dir, "sshd_config"), sshdConfig(host));
  await writeHostUsers(host);
  return hostPublicKey(host);
}

/**
 * The host's own user database and sudoers: the machine's, plus the normal user `deploy` and
 * the one sudoers rule nixosModules.host writes for it (`services.nixship-host.deployUser`),
 * so a deploy can reach the host as a pinned NixOS host is reached (docs/pinned-hosts.md).
 * The rule names /run/current-system/sw/bin/nixship-activate, which exists only on a host
 * running a system that installs it. Bound over the machine's files in the host only.
 */
async function writeHostUsers(host: LabHostLayout): Promise<void> {
  const machine = async (file: string) => readFile(file, "utf8").catch(() => undefined);
  const [passwd, group, shadow] = await Promise.all(
    ["/etc/passwd", "/etc/group", "/etc/shadow"].map(machine),
  );
  if (passwd === undefined || group === undefined) return;
  const taken = new Set(
    [passwd, group].flatMap((text) => text.split("\n").map((line) => line.split(":")[2])),
  );
  let id = 2000;
  while (taken.has(String(id))) id++;
  const has = (text: string) => text.split("\n").some((l) => l.startsWith(`${LAB_DEPLOY_USER}:`));
  const add = (text: string, line: string) =>
    has(text) ? text : `${text}${text.endsWith("\n") || text === "" ? "" : "\n"}${line}\n`;
  await writeFile(
    join(host.dir, "etc-passwd"),
    add(passwd, `${LAB_DEPLOY_USER}:x:${id}:${id}:nixship deploys:${LAB_DEPLOY_HOME}:/bin/sh`),
    { mode: 0o644 },
  );
  await writeFile(join(host.dir, "etc-group"), add(group, `${LAB_DEPLOY_USER}:x:${id}:`), {
    mode: 0o644,
  });
  if (shadow !== undefined) {
    // "*": no password (keys only), and not locked ("!"), which sshd would refuse.
    await writeFile(join(host.dir, "etc-shadow"), add(shadow, `${LAB_DEPLOY_USER}:*:20000::::::`), {
      mode: 0o600,
    });
  }
  const sudoers = join(host.dir, "sudoers.d");
  await mkdir(sudoers, { recursive: true, mode: 0o755 });
  await writeFile(join(sudoers, "nixship-deploy"), LAB_DEPLOY_SUDOERS, { mode: 0o440 });
}

/** The lab hosts' normal deploy user (nixosModules.host's `deployUser`). */
export const LAB_DEPLOY_USER = "deploy";
/** Its home, on the host's own /run. */
const LAB_DEPLOY_HOME = "/run/nixship-lab/home";
/** The sudoers rule NixOS renders from nixship-host.nix's security.sudo.extraRules entry. */
export const LAB_DEPLOY_SUDOERS = `${LAB_DEPLOY_USER} ALL=(root) NOPASSWD: /run/current-system/sw/bin/nixship-activate\n`;

/** The host's SSH host key as known_hosts and the fleet's `hostKey` write it. */
export async function hostPublicKey(host: LabHostLayout): Promise<string> {
  const pub = join(host.dir, "ssh_host_ed25519_key.pub");
  const [type, base64] = (await readFile(pub, "utf8")).trim().split(/\s+/);
  return `${type} ${base64}`;
}

/** A file or directory of the machine a host also sees: [source, target in the host's /run]. */
export type HostBind = readonly [source: string, target: string];

/** How the host boots: what lab-boot.ts's boot loader chose, and the host's power button. */
export interface HostBoot {
  /** The system whose init runs before sshd starts; undefined: none (a host never deployed). */
  readonly system?: string | undefined;
  /** A counted boot: the booted entry's file name, which the OS reads as LoaderBootCountPath. */
  readonly countedEntry?: string | undefined;
}

/** Where, in the host, the lab's stand-ins for firmware live (its /run, so each boot anew). */
export const HOST_FIRMWARE_DIR = "/run/nixship-lab";
/** What hostInit exits with when the chosen system's init fails: the host did not boot. */
export const DID_NOT_BOOT = 64;

/**
 * The script that turns a fresh mount namespace into the host's view, boots the host's system,
 * then becomes sshd. The binds are made inside the host's own /run before /tmp and /root are
 * hidden, so a source may lie under them.
 */
function hostInit(
  host: LabHostLayout,
  binds: readonly HostBind[],
  software: HostSoftware,
  boot: HostBoot,
): string {
  const esp = espDir(host.dir);
  return [
    "set -e",
    `mount --bind ${shellQuote(join(host.dir, "nix"))} /nix`,
    `mount --bind ${shellQuote(join(host.dir, "etc-nix"))} /etc/nix`,
    ...(software.nix ? hostNixBind(software.nix) : []),
    ...hostShellBind(software.shell ?? "system"),
    "mount -t tmpfs -o mode=0755 nixship-lab-run /run",
    // sshd's files move into the host's own /run, so nothing of the host needs the lab's
    // directory (which may be under /tmp, hidden next).
    `mkdir -p /run/sshd ${HOST_SSHD_DIR}`,
    ...["sshd_config", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "authorized_keys"].map(
      (f) => `cp ${shellQuote(join(host.dir, f))} ${HOST_SSHD_DIR}/${f}`,
    ),
    `chmod 600 ${HOST_SSHD_DIR}/ssh_host_ed25519_key`,
    // A public key, read by sshd as the user logging in (the deploy user too).
    `chmod 644 ${HOST_SSHD_DIR}/authorized_keys`,
    ...hostKeyAtEtcSsh(),
    ...hostUsers(host),
    ...binds.flatMap(([source, target]) => [
      `mkdir -p ${shellQuote(dirname(target))}`,
      `if [ -d ${shellQuote(source)} ]; then mkdir -p ${shellQuote(target)}; else : > ${shellQuote(target)}; fi`,
      `mount --bind ${shellQuote(source)} ${shellQuote(target)}`,
    ]),
    // The ESP at /boot, the power button, and the boot loader's word on a counted boot.
    `mkdir -p ${shellQuote(esp)} ${HOST_FIRMWARE_DIR}/efivars`,
    // The kernel's boot id, new at each boot as a machine's is (the host shares the machine's
    // kernel, whose own id never changes across a lab reboot).
    `cat /proc/sys/kernel/random/uuid >${HOST_FIRMWARE_DIR}/boot_id`,
    `mount --bind ${HOST_FIRMWARE_DIR}/boot_id /proc/sys/kernel/random/boot_id`,
    `mount --bind ${shellQuote(esp)} /boot`,
    `cp ${shellQuote(powerScriptPath(host))} ${HOST_FIRMWARE_DIR}/power`,
    `chmod 755 ${HOST_FIRMWARE_DIR}/power`,
    ...(boot.countedEntry === undefined
      ? []
      : [
          `printf '%s' ${shellQuote(`/loader/entries/${boot.countedEntry}`)} >${HOST_FIRMWARE_DIR}/efivars/LoaderBootCountPath`,
        ]),
    "mount -t tmpfs -o mode=1777 nixship-lab-tmp /tmp",
    // A fresh host's root has an empty home, not the deployer's shell start-up files.
    "mount -t tmpfs -o mode=0700 nixship-lab-root /root",
    // Stage 2: the system's init (NixOS's sets /run/booted-system and starts its services).
    ...(boot.system === undefined
      ? []
      : [
          ...restoreSecrets(boot.system),
          `if ! ${shellQuote(`${boot.system}/init`)}; then`,
          `  echo ${shellQuote(`nixship-lab: ${boot.system} did not boot`)} >&2`,
          `  exit ${DID_NOT_BOOT}`,
          "fi",
        ]),
    `exec /usr/sbin/sshd -D -e -f ${HOST_SSHD_DIR}/sshd_config`,
  ].join("\n");
}

/**
 * Lines that install the host's secrets again from what activate.sh kept on its disk, before
 * the system's init starts its services: the step nixosModules.host adds to a NixOS system's
 * activation at boot, with the system's own nixship-activate where it has one (a pinned
 * system), else with the activate.sh of the nixship that runs the lab. (Unlike a NixOS host
 * without that module, every lab host has it.) A failure is said, and the boot goes on.
 */
function restoreSecrets(system: string): string[] {
  const pinned = shellQuote(`${system}/sw/bin/nixship-activate`);
  const script = shellQuote(`${HOST_FIRMWARE_DIR}/nixship/dist/host/activate.sh`);
  const args = `restore-secrets --system ${shellQuote(system)}`;
  const failed = shellQuote(
    `nixship-lab: ${system}: the host's secrets could not be installed again`,
  );
  return [
    `if [ -x ${pinned} ]; then ${pinned} ${args}; else sh ${script} ${args}; fi >/dev/null ||`,
    `  echo ${failed} >&2`,
  ];
}

/** Lines that bind the host's own user database and sudoers (writeHostUsers) over the machine's. */
function hostUsers(host: LabHostLayout): string[] {
  const bind = (source: string, target: string) =>
    `if [ -e ${shellQuote(source)} ] && [ -e ${target} ]; then mount --bind ${shellQuote(source)} ${target}; fi`;
  return [
    bind(join(host.dir, "etc-passwd"), "/etc/passwd"),
    bind(join(host.dir, "etc-group"), "/etc/group"),
    bind(join(host.dir, "etc-shadow"), "/etc/shadow"),
    bind(join(host.dir, "sudoers.d"), "/etc/sudoers.d"),
    `if id ${LAB_DEPLOY_USER} >/dev/null 2>&1; then mkdir -p ${LAB_DEPLOY_HOME} && chown ${LAB_DEPLOY_USER}: ${LAB_DEPLOY_HOME} && chmod 700 ${LAB_DEPLOY_HOME}; fi`,
  ];
}

/**
 * Lines that show the host its own host key where a real host keeps it, so that
 * `age -d -i /etc/ssh/ssh_host_ed25519_key` uses it: the key files bound over the machine's,
 * within this mount namespace only. A machine without those files gets, instead of new files in
 * its /etc/ssh, a copy of its /etc/ssh bound over it, with the host's key files and no others.
 */
function hostKeyAtEtcSsh(): string[] {
  const key = "ssh_host_ed25519_key";
  const copy = `${HOST_SSHD_DIR}/etc-ssh`;
  return [
    `if [ -f /etc/ssh/${key} ] && [ -f /etc/ssh/${key}.pub ]; then`,
    `  mount --bind ${HOST_SSHD_DIR}/${key} /etc/ssh/${key}`,
    `  mount --bind ${HOST_SSHD_DIR}/${key}.pub /etc/ssh/${key}.pub`,
    "elif [ -d /etc/ssh ]; then",
    `  mkdir -p ${copy}`,
    `  cp -a /etc/ssh/. ${copy}/`,
    `  rm -f ${copy}/ssh_host_*`,
    `  cp -p ${HOST_SSHD_DIR}/${key} ${HOST_SSHD_DIR}/${key}.pub ${copy}/`,
    `  mount --bind ${copy} /etc/ssh`,
    "fi",
  ];
}

/** What a host runs instead of the machine's own: `lab up --nix`, `--sh`. */
export interface HostSoftware {
  readonly nix?: HostNix | undefined;
  readonly shell?: HostShell | undefined;
}

/** Starts the host's sshd, detached; returns its pid once it accepts connections. */
export async function startHost(
  host: LabHostLayout,
  binds: readonly HostBind[] = [],
  software: HostSoftware = {},
  boot: HostBoot = {},
): Promise<number> {
  await mkdir("/nix", { recursive: true });
  await mkdir("/etc/nix", { recursive: true });
  await mkdir("/boot", { recursive: true });
  const log = openSync(join(host.dir, "sshd.log"), "a");
  let pid: number | undefined;
  let exited: string | undefined;
  let didNotBoot = false;
  try {
    // ip netns exec and unshare exec their command, so the pid is sshd's own.
    const child = spawn(
      "ip",
      [
        "netns",
        "exec",
        host.netns,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        hostInit(host, binds, software, boot),
      ],
      { detached: true, stdio: ["ignore", log, log] },
    );
    child.on("exit", (code, signal) => {
      exited = signal ? `was killed by ${signal}` : `exited with ${code}`;
      if (code === DID_NOT_BOOT) didNotBoot = true;
    });
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(log);
  }
  if (pid === undefined) throw new OperationError("lab-start-failed", `cannot start ${host.name}`);
  const deadline = Date.now() + 15_000;
  while (!(await accepts(host.address, 22))) {
    if (exited !== undefined || Date.now() > deadline) {
      const tail = (await readFile(join(host.dir, "sshd.log"), "utf8").catch(() => ""))
        .trim()
        .split("\n")
        .slice(-5)
        .join("\n");
      if (didNotBoot) throw new HostDidNotBoot(host.name, boot.system ?? "", tail);
      throw new OperationError(
        "lab-start-failed",
        `the sshd of ${host.name} ${exited ?? "did not listen within 15 s"}${tail ? `:\n${tail}` : ""}`,
        { hint: `its log is ${join(host.dir, "sshd.log")}` },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return pid;
}

/** The system the boot loader chose did not boot (its init failed): what is on the console. */
export class HostDidNotBoot extends OperationError {
  constructor(
    readonly host: string,
    readonly system: string,
    readonly console: string,
  ) {
    super(
      "lab-host-did-not-boot",
      `${host} did not boot ${system}${console ? `:\n${console}` : ""}`,
    );
  }
}

/** Where the lab keeps a host's power button (copied into the host at each boot). */
export function powerScriptPath(host: LabHostLayout): string {
  return join(host.dir, "power");
}

function accepts(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: address, port, timeout: 500 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
    socket.once("timeout", () => done(false));
  });
}

/** Stops every process in the host's network namespace: TERM, then KILL after 5 s. */
/** Whether process `pid` runs (a zombie is dead, only not yet reaped by its parent). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Every process `pid` started, and those they started, as /proc tells them now. */
export function descendantsOf(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone since the listing
    }
  }
  const found: number[] = [];
  const queue = [...(children.get(pid) ?? [])];
  while (queue.length > 0) {
    const next = queue.shift() as number;
    found.push(next);
    queue.push(...(children.get(next) ?? []));
  }
  return found;
}

export async function stopProcesses(pids: readonly number[]): Promise<void> {
  const alive = processAlive;
  const signal = (pid: number, sig: NodeJS.Signals) => {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  for (const pid of pids) signal(pid, "SIGTERM");
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  for (const pid of pids.filter(alive)) signal(pid, "SIGKILL");
  const last = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < last) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Hosts that `lab up` starts, and `lab down` stops, at once: most of a host's start is waiting
 * on its processes (ssh-keygen, ip, sshd listening), so one at a time 200 hosts take minutes.
 */
export const HOSTS_AT_ONCE = 8;
