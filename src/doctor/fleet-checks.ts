// The fleet's side of `nixship doctor`: the fleet file, the signing keys against what the
// fleet trusts, ssh and known_hosts, the cache, each selected ssh host over a fresh
// connection, and what SSM and agent hosts need. Every check is bounded in time.
import { access, stat } from "node:fs/promises";
import { requireCacheInfo } from "../cache/cache-info.js";
import { sshTarget } from "../delivery/ssh.js";
import { runActivate, runOverSsh, type SshTarget } from "../delivery/ssh-transport.js";
import { SERVE_CACHE_FIX } from "../deploy/served-cache.js";
import { InputError, OperationError } from "../errors.js";
import { requireTrustedSigningKey } from "../fleet/cache-trust.js";
import type { Fleet, FleetHost, SshHost } from "../fleet/fleet.js";
import { hostPolicy } from "../fleet/host-policy.js";
import { PINNED_ACTIVATOR, statusArgs } from "../host/activation.js";
import { hostStatus } from "../host/script-outcomes.js";
import type { MetricsSource } from "../metrics/prometheus.js";
import type { SecretKey } from "../nix/keys.js";
import { ensureConditionalWrites } from "../store/conditional-writes.js";
import { openStore } from "../store/url.js";
import { eitherSignal, startDeadline } from "../util/deadline.js";
import { mapLimit } from "../util/pool.js";
import { runCommand } from "../util/run.js";
import { shellQuote } from "../util/shell-quote.js";
import { testWait } from "../util/test-waits.js";
import { shownUrl } from "../util/url-credentials.js";
import { type Check, fail, ok, skip, warn } from "./check.js";
import { judgeNixVersion } from "./local-nix.js";
import { checkPrometheus } from "./prometheus-checks.js";

/** Seconds one host's ssh check may take ($NIXSHIP_DOCTOR_HOST_TIMEOUT shortens it for tests). */
const HOST_TIMEOUT = 20;
const hostTimeout = () => testWait("NIXSHIP_DOCTOR_HOST_TIMEOUT", HOST_TIMEOUT, HOST_TIMEOUT);
/**
 * Seconds the cache's checks may take in all ($NIXSHIP_DOCTOR_CACHE_TIMEOUT shortens it for
 * tests): an endpoint that takes connections and never answers would otherwise hold doctor for
 * the S3 client's three attempts of a minute each, per request.
 */
const CACHE_TIMEOUT = 30;
const cacheTimeout = () => testWait("NIXSHIP_DOCTOR_CACHE_TIMEOUT", CACHE_TIMEOUT, CACHE_TIMEOUT);
/** What the host's login shell says on stderr before it starts `sh -s` with the probe. */
const LOGIN_MARK = "nixship-doctor-login";
/** Hosts checked at once. */
const HOST_JOBS = 8;
/**
 * What a host says about its Nix and store, and whether it has the installed activation script
 * of a pinned host, one `key=value` per line.
 */
const HOST_PROBE = `printf "nix=%s\\n" "$(nix-store --version 2>/dev/null | head -n 1)"; if [ -w /nix/store ]; then echo store=writable; else echo store=read-only; fi; if [ -x ${PINNED_ACTIVATOR} ]; then echo activator=yes; fi`;
/** Seconds a host may take to fetch the substituter's nix-cache-info. */
const SUBSTITUTER_TIMEOUT = 5;

/**
 * HOST_PROBE, and with a substituter `substituter=CODE FIRST-ERROR-LINE` from curl fetching its
 * nix-cache-info as the host's Nix would (CODE 0: it answered 200), or `substituter=no-curl`.
 */
function hostProbe(substituter: string | undefined): string {
  if (substituter === undefined) return HOST_PROBE;
  const url = shellQuote(`${substituter.replace(/\/+$/, "")}/nix-cache-info`);
  return `${HOST_PROBE}; if command -v curl >/dev/null 2>&1; then e=$(curl -fsS -o /dev/null --max-time ${SUBSTITUTER_TIMEOUT} ${url} 2>&1); c=$?; printf "substituter=%s %s\\n" "$c" "$(printf "%s" "$e" | head -n 1)"; else echo substituter=no-curl; fi`;
}

/** A key file named on the command line: read (mode and format checked), or it did not read (reported already). */
export type GivenKey = SecretKey | "unreadable";

export interface FleetCheckInput {
  readonly fleet: Fleet;
  readonly fleetFile: string;
  readonly hosts: readonly FleetHost[];
  /** The cache signing key (--key). */
  readonly key: GivenKey | undefined;
  /** The release key (--release-key or $NIXSHIP_RELEASE_KEY). */
  readonly releaseKey: GivenKey | undefined;
  /**
   * The cache the deployer serves for this check (`doctor --serve-cache`), which each ssh host
   * must reach as a deploy's `--serve-cache` would have it; else `cache.substituter` is checked.
   */
  readonly served?: string;
  readonly signal?: AbortSignal;
  /** The fleet's Prometheus, opened with its token (or why it could not be). */
  readonly metrics?: MetricsSource | { readonly unreadable: string };
}

export async function checkFleet(input: FleetCheckInput): Promise<Check[]> {
  const checks: Check[] = [
    ok("fleet", "fleet file", `${input.fleetFile}: ${input.fleet.hosts.length} host(s)`),
  ];
  checks.push(...checkKeys(input));
  checks.push(...(await checkCache(input)));
  const ssh = input.hosts.filter((h) => h.delivery === "ssh");
  if (ssh.length > 0) checks.push(...(await checkSsh(input, ssh)));
  if (input.hosts.some((h) => h.delivery === "ssm")) checks.push(checkSsm(input.fleet));
  checks.push(...(await checkPrometheus(input.fleet, input.hosts, input.metrics)));
  return checks;
}

function checkKeys(input: FleetCheckInput): Check[] {
  const { fleet, fleetFile, key, releaseKey } = input;
  const checks: (Check | undefined)[] = [];
  if (fleet.cache !== undefined) {
    checks.push(
      key === undefined
        ? skip(
            "keys",
            "cache signing key",
            "no --key given: deploy needs the one whose public half is in cache.publicKeys",
          )
        : trusted(
            "keys",
            "cache signing key",
            key,
            fleet.cache.publicKeys,
            fleetFile,
            "cache.publicKeys",
          ),
    );
  }
  if (input.hosts.some((h) => h.delivery === "agent")) {
    const releases = fleet.releases;
    checks.push(
      releases === undefined
        ? fail(
            "agent",
            "releases",
            "the fleet has agent hosts but no releases section",
            `add "releases": {"channel": "production", "publicKeys": ["NAME:BASE64"]} to ${fleetFile}`,
          )
        : releaseKey === undefined
          ? warn(
              "agent",
              "release key",
              "no --release-key or $NIXSHIP_RELEASE_KEY",
              "deploys to agent hosts sign releases: give --release-key FILE (its public half in releases.publicKeys)",
            )
          : trusted(
              "agent",
              "release key",
              releaseKey,
              releases.publicKeys,
              fleetFile,
              "releases.publicKeys",
            ),
    );
  }
  return checks.filter((c): c is Check => c !== undefined);
}

/** A key's check against the fleet's trusted keys; none for a key that did not read. */
function trusted(
  area: string,
  name: string,
  key: GivenKey,
  keys: readonly string[],
  fleetFile: string,
  field: "cache.publicKeys" | "releases.publicKeys",
): Check | undefined {
  if (key === "unreadable") return undefined;
  try {
    requireTrustedSigningKey(key, keys, fleetFile, field);
    return ok(area, name, `'${key.name}' is in ${field}`);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return fail(area, name, err.message, err.hint ?? "");
  }
}

async function checkCache(input: FleetCheckInput): Promise<Check[]> {
  const cache = input.fleet.cache;
  if (cache === undefined) {
    return [skip("cache", "cache", "the fleet has no cache: ssh hosts get closures with nix copy")];
  }
  const checks: Check[] = [];
  let store: Awaited<ReturnType<typeof openStore>> | undefined;
  const seconds = cacheTimeout();
  const deadline = startDeadline(seconds * 1000);
  const expired = new Promise<"expired">((resolve) =>
    deadline.signal.addEventListener("abort", () => resolve("expired"), { once: true }),
  );
  const within = async <T>(work: Promise<T>): Promise<T> => {
    const first = await Promise.race([work, expired]);
    if (first === "expired") {
      // (What is still under way is let go: the store is closed below.)
      work.catch(() => undefined);
      throw new OperationError(
        "cache-timeout",
        `${shownUrl(cache.url)} gave no answer within ${seconds} s (doctor's bound for the cache's checks)`,
        {
          hint: `check ${shownUrl(cache.url)}: its endpoint, the network to it, and the credentials that reach it`,
        },
      );
    }
    return first as T;
  };
  try {
    store = await within(openStore(cache.url));
    await within(requireCacheInfo(store));
    checks.push(ok("cache", "cache", `${store.url} holds a binary cache`));
    if (input.hosts.some((h) => h.delivery === "agent")) {
      await within(ensureConditionalWrites(store));
      checks.push(
        ok(
          "cache",
          "conditional writes",
          "the store honours if-absent and if-match writes (probe objects under releases/.nixship-probe/, removed)",
        ),
      );
    }
  } catch (err) {
    const e = err as Error & { hint?: string };
    checks.push(
      fail(
        "cache",
        "cache",
        e.message,
        e.hint ?? `check ${cache.url} and the credentials that reach it`,
      ),
    );
  } finally {
    deadline.clear();
    await store?.close();
  }
  return checks;
}

async function checkSsh(input: FleetCheckInput, hosts: readonly FleetHost[]): Promise<Check[]> {
  const settings = input.fleet.ssh;
  const checks: Check[] = [];
  const client = await runCommand("ssh", ["-V"], { signal: AbortSignal.timeout(10_000) }).then(
    (r) => ok("ssh", "ssh client", (r.stderr || r.stdout).trim()),
    (err: Error) => fail("ssh", "ssh client", err.message, "apt-get install openssh-client"),
  );
  checks.push(client);
  if (client.status === "fail") return checks;
  if (settings.knownHosts !== undefined) {
    const file = settings.knownHosts;
    const info = await stat(file).catch(() => undefined);
    checks.push(
      info === undefined
        ? fail(
            "ssh",
            "known_hosts",
            `${file} does not exist`,
            `write the hosts' keys there (ssh-keyscan -t ed25519 HOST >> ${file}, checked out of band), or fix ssh.knownHosts`,
          )
        : info.size === 0
          ? fail(
              "ssh",
              "known_hosts",
              `${file} is empty: every host key check fails`,
              `add the hosts' keys to ${file}`,
            )
          : ok("ssh", "known_hosts", file),
    );
  }
  if (settings.configFile !== undefined) {
    const readable = await access(settings.configFile).then(
      () => true,
      () => false,
    );
    checks.push(
      readable
        ? ok("ssh", "ssh config", settings.configFile)
        : fail(
            "ssh",
            "ssh config",
            `${settings.configFile} cannot be read`,
            "fix ssh.configFile in the fleet file",
          ),
    );
  }
  const probed = await mapLimit(hosts, HOST_JOBS, (host) => checkHost(input, host));
  return [...checks, ...probed.flat()];
}

async function checkHost(input: FleetCheckInput, host: FleetHost): Promise<Check[]> {
  if (host.delivery !== "ssh") return [];
  const area = `host ${host.name}`;
  const target = sshTarget(host, input.fleet.ssh);
  const timeout = hostTimeout();
  // One deadline for all of the host's checks (a one-shot command: left to run out).
  const deadline = startDeadline(timeout * 1000);
  const signal = eitherSignal(deadline, input.signal);
  // Only HTTP ones: what curl fetches as the host's Nix would (an s3:// one needs credentials).
  const substituter = [input.served ?? input.fleet.cache?.substituter].find(
    (u) => u !== undefined && /^https?:\/\//.test(u),
  );
  // Piped to `sh -s`, as a deploy pipes its script: a host whose login works but whose `sh -s`
  // never answers fails here, within the deadline, instead of hanging the deploy.
  let loggedIn = false;
  const r = await runOverSsh(target, `echo ${LOGIN_MARK} >&2; sh -s`, {
    input: hostProbe(substituter),
    fresh: true,
    signal,
    onStderrLine: (line) => {
      if (line.trim() === LOGIN_MARK) loggedIn = true;
    },
  });
  if (r.code !== 0 && deadline.signal.aborted) {
    return [
      loggedIn
        ? fail(
            area,
            "shell",
            `host ${host.name}: the ssh login worked, but 'sh -s' (which runs a deploy's script) did not answer within ${timeout} s`,
            `run 'echo true | ssh ${target.destination} sh -s' by hand: it must return at once; look at what the host's sh (or what its startup files run) waits on`,
          )
        : fail(
            area,
            "ssh",
            `host ${host.name}: the ssh login did not answer within ${timeout} s`,
            sshFix("timed out", target),
          ),
    ];
  }
  if (r.code !== 0) {
    const said =
      r.stderr
        .trim()
        .split("\n")
        .filter((l) => l.trim() !== LOGIN_MARK && l.trim() !== "")
        .at(-1) ?? `ssh exited with ${r.code}`;
    return [fail(area, "ssh", said, sshFix(said, target))];
  }
  const facts = new Map(
    r.stdout.split("\n").flatMap((l) => {
      const eq = l.indexOf("=");
      return eq > 0 ? [[l.slice(0, eq), l.slice(eq + 1).trim()] as const] : [];
    }),
  );
  const nix = facts.get("nix") ?? "";
  const pinning = await checkPinning(input, host, target, facts.get("activator") === "yes", signal);
  return [
    ok(area, "ssh", `a new connection to ${target.destination} works`),
    // Through sudo, the deploy user runs nothing of Nix itself: nixship-activate runs root's
    // (its own user's Nix may well not run, e.g. for its per-user profile: that is no problem).
    target.sudo === true
      ? ok(
          area,
          "nix",
          `not needed by ${target.user ?? "the ssh user"}: nixship-activate runs root's Nix (see "pinned")`,
        )
      : nix === ""
        ? fail(
            area,
            "nix",
            "nix-store is not on the host's PATH",
            "install Nix on the host (NixOS has it)",
          )
        : judgeNixVersion(area, nix, `host ${host.name}`),
    target.sudo === true
      ? ok(area, "store", `written as root by nixship-activate (through sudo)`)
      : facts.get("store") === "writable"
        ? ok(area, "store", "/nix/store is writable")
        : fail(
            area,
            "store",
            `/nix/store is not writable for ${target.user ?? input.fleet.ssh.user}`,
            'deploy as root (ssh.user), or as a deploy user through the host\'s nixship-activate ("sudo": true; docs/pinned-hosts.md)',
          ),
    pinning,
    ...(substituter === undefined
      ? []
      : [
          judgeHostSubstituter(
            area,
            substituter,
            facts.get("substituter"),
            input.served !== undefined,
          ),
        ]),
  ];
}

/**
 * Whose trust the host takes: a host reached by sudo must answer through its installed script
 * with pinned trust; one reached by the piped script is not pinned, which fails where its
 * policy requires pinning and warns where it has nixship-activate all the same.
 */
async function checkPinning(
  input: FleetCheckInput,
  host: SshHost,
  target: SshTarget,
  activator: boolean,
  signal: AbortSignal,
): Promise<Check> {
  const area = `host ${host.name}`;
  const user = target.user ?? "the ssh user";
  const required = hostPolicy(input.fleet.policy, input.fleet.policies, host).requirePinned;
  if (target.sudo === true) {
    const status = hostStatus(
      await runActivate(target, statusArgs(false), {
        timeoutSeconds: hostTimeout(),
        signal,
      }),
    );
    if (!status.reachable) {
      return fail(
        area,
        "pinned",
        `sudo -n ${PINNED_ACTIVATOR} status: ${status.error}`,
        `enable nixosModules.host with services.nixship-host.deployUser = "${user}" and deploy it once as root; docs/pinned-hosts.md`,
      );
    }
    if (!status.pinned) {
      return fail(
        area,
        "pinned",
        `${PINNED_ACTIVATOR} answered without pinned trust`,
        "the host's nixship-activate is not nixship's: rebuild it with nixosModules.host",
      );
    }
    const subs = status.pinned.substituters;
    const detail = `reached as ${user} through sudo ${PINNED_ACTIVATOR}: it trusts keys ${status.pinned.keys.join(", ")}${subs.length > 0 ? ` and substitutes from ${subs.join(", ")}` : " and substitutes from nothing"}`;
    return pinnedKeysCheck(area, detail, status.pinned.keys, input.fleet.cache?.publicKeys);
  }
  const text = `not pinned: reached as ${user} by the piped script, which takes the deployer's trust`;
  if (activator) {
    return (required ? fail : warn)(
      area,
      "pinned",
      `${text}, though the host has ${PINNED_ACTIVATOR}`,
      `set "sudo": true (ssh.sudo, or the host's own) and ssh.user to its deploy user`,
    );
  }
  if (required) {
    return fail(
      area,
      "pinned",
      `${text}, and its policy requires pinning (requirePinned)`,
      "enable nixosModules.host in its configuration, deploy it once as root, then set ssh.sudo (docs/pinned-hosts.md)",
    );
  }
  return ok(area, "pinned", `${text} (the host has no nixship-activate)`);
}

/**
 * A pinned host's keys against the fleet's `cache.publicKeys`: one that pins none of them
 * refuses every path the fleet pushes; one that pins a key the fleet no longer lists (rotated,
 * or leaked) still takes what that key signs (docs/keys.md). Keys are compared by name, as the
 * host names them.
 */
function pinnedKeysCheck(
  area: string,
  detail: string,
  pinned: readonly string[],
  fleetKeys: readonly string[] | undefined,
): Check {
  if (fleetKeys === undefined) return ok(area, "pinned", detail);
  const listed = new Set(fleetKeys.map((k) => k.slice(0, Math.max(0, k.indexOf(":")))));
  const dropped = pinned.filter((k) => !listed.has(k));
  const hint =
    "its pinned keys come from its system (services.nixship-host.trustedKeys): deploy one that pins the keys of cache.publicKeys, signed with a key it pins now (docs/keys.md)";
  if (dropped.length === pinned.length) {
    return fail(
      area,
      "pinned",
      `${detail}; none of them is in cache.publicKeys (${[...listed].join(", ")}): it refuses every path this fleet pushes`,
      hint,
    );
  }
  if (dropped.length > 0) {
    return warn(
      area,
      "pinned",
      `${detail}; ${dropped.join(", ")} ${dropped.length === 1 ? "is" : "are"} not in cache.publicKeys (rotated, or leaked?): the host still takes what ${dropped.length === 1 ? "it signs" : "they sign"}`,
      hint,
    );
  }
  return ok(area, "pinned", detail);
}

/** Whether the host fetched the substituter's nix-cache-info (`code` as hostProbe reports it). */
function judgeHostSubstituter(
  area: string,
  url: string,
  said: string | undefined,
  served: boolean,
): Check {
  const what = served ? "the cache served by --serve-cache" : "cache.substituter";
  if (said === "no-curl") {
    return skip(
      area,
      "substituter",
      `curl is not on the host: cannot check that it reaches ${url}`,
    );
  }
  const [code = "", ...words] = (said ?? "").split(" ");
  const error = words.join(" ").trim() || `curl exited with ${code || "no answer"}`;
  if (code === "0") return ok(area, "substituter", `reaches ${what}: ${url}`);
  return fail(
    area,
    "substituter",
    `cannot fetch ${url.replace(/\/+$/, "")}/nix-cache-info (${what}): ${error}; the host would fail to realise its system`,
    served
      ? SERVE_CACHE_FIX
      : "make cache.substituter reachable from the hosts, or fix it in the fleet file (or serve the cache with deploy --serve-cache)",
  );
}

/**
 * The fix for what ssh said when a new connection failed (hosts and builders alike); `keyAt`
 * says where the host's key is kept when it is not a known_hosts file of the user's (a
 * builder entry's PUBLIC_HOST_KEY).
 */
export function sshFix(said: string, target: SshTarget, keyAt?: string): string {
  const knownHosts = keyAt ?? target.knownHosts ?? "ssh's known_hosts (~/.ssh/known_hosts)";
  const outOfBand =
    "check it out of band (ssh-keyscan HOST, compared with the host's own /etc/ssh/ssh_host_ed25519_key.pub)";
  if (/No .* host key is known/i.test(said)) {
    return `the host's key is not in ${knownHosts}: ${outOfBand}, then add its line`;
  }
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED/i.test(said)) {
    return `the host's key is not the one in ${knownHosts}: ${outOfBand}, then replace its line`;
  }
  // (ssh in batch mode may say no more, whether the key is unknown or another.)
  if (/Host key verification failed/i.test(said)) {
    return `the host's key is not the one in ${knownHosts}, or not in it: ${outOfBand}, then replace or add its line`;
  }
  if (/Permission denied/i.test(said)) {
    const user =
      target.user === undefined
        ? "the ssh user (ssh_config's, else your login name)"
        : `${target.user}@`;
    return `authorise your ssh key for ${user} on the host`;
  }
  if (/Connection refused|timed out|No route|Could not resolve/i.test(said)) {
    return "check the host is up, sshd runs, and the address (or ssh_config alias) is right";
  }
  return "run ssh by hand with -v to see why";
}

function checkSsm(fleet: Fleet): Check {
  const region = fleet.ssm.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
  return region === undefined
    ? warn(
        "ssm",
        "region",
        "no ssm.region in the fleet, and no $AWS_REGION",
        "set ssm.region (the SDK may also take it from ~/.aws/config)",
      )
    : ok("ssm", "region", `${region}; document ${fleet.ssm.documentName}`);
}
