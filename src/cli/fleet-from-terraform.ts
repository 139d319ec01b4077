// `nixship fleet from-terraform`: a fleet file from `terraform output -json` of examples/aws,
// with the hosts' systems (and keys, policy) from a base fleet or a system template; and, for
// ssh hosts, their SSH host keys merged into a known_hosts file (known-hosts-update.ts).

import { stat } from "node:fs/promises";
import { dirname, isAbsolute, relative, resolve } from "node:path";
import { InputError, UsageError } from "../errors.js";
import { DELIVERY_MODES, type DeliveryMode, type Fleet, type FleetHost } from "../fleet/fleet.js";
import { parseFleet } from "../fleet/fleet-file.js";
import { formatJson } from "../fleet/fleet-json.js";
import {
  fleetFromTerraform,
  SYSTEM_TEMPLATE_PLACEHOLDER,
  systemSpec,
} from "../fleet/from-terraform.js";
import { isJsonObject } from "../fleet/json-check.js";
import { parseJsonText } from "../fleet/json-text.js";
import { MAX_FLEET_JSON } from "../fleet/load-fleet.js";
import { relocateFleet, relocateInstallable } from "../fleet/relocate-fleet.js";
import { formatPublicKey } from "../nix/keys.js";
import { hostKeyObjectKey } from "../status/host-key-store.js";
import { readFileBounded } from "../util/bounded-file.js";
import { namesShown } from "../util/names-shown.js";
import { type Command, parseFlags, writeJson } from "./command.js";
import { readTrustedKeys } from "./keys-input.js";
import {
  HOSTS_NAMED,
  knownHostsUpdate,
  reportKnownHosts,
  STORE_READ_TIMEOUT,
  writeKnownHosts,
} from "./known-hosts-update.js";
import { checkOutputFile, readInputText, writeOutputFile } from "./output-file.js";

const COMMAND = "fleet from-terraform";

export const fleetFromTerraformCommand: Command = {
  path: ["fleet", "from-terraform"],
  summary: "write a fleet file from 'terraform output -json' (instance IDs, tags, addresses)",
  help: `Usage: nixship fleet from-terraform OUTPUT_JSON [--via ssm|ssh|agent]
                                    [--base FLEET] [--system TEMPLATE] [--tag-keys K,...]
                                    [--cache-key KEY]... [--substituter URL] [--out FILE]
                                    [--known-hosts FILE] [--replace-host-keys] [--json]

Reads what 'terraform output -json' prints for examples/aws (OUTPUT_JSON, or - for stdin)
and writes a fleet file: one host per entry of the "hosts" output, reached by --via:
  ssm (default)   "instanceId" from instance_id (every host must have one)
  ssh             "address" from public_ip, or else private_ip
  agent           follows the releases of the base fleet's channel
Every host gets "address" (public_ip, else private_ip) when it has one, for health checks,
and "tags" from its instance tag Role and the tag keys of --tag-keys: the values lowercased,
each a valid fleet tag or an error. From the other outputs: cache.url (cache_url),
ssm.documentName (ssm_document_name) and ssm.region (region). A host's ssh_host_public_key
(the host module's output, when it generates the key) becomes, for ssm and agent hosts,
"hostKey" (what their secrets are encrypted to); for ssh hosts, see --known-hosts.

Terraform does not know what each host runs, so at least one of these is required:
  --base FLEET        a fleet file that names the hosts' systems; also gives the settings
                      Terraform does not know: cache.publicKeys and cache.substituter,
                      releases, ssh, policy (with its health checks), policies, build,
                      deltas, secrets, prometheus, ssm.commandTimeout; and of each host,
                      its tags (beside Terraform's) and, for ssh hosts, sshUser and sudo
                      (each host is reached at Terraform's address: not the base's sshHost).
                      Its hosts that Terraform does not list are left out (named on
                      stderr).
  --system TEMPLATE   the system of every host the base does not name; {name} becomes the
                      host's name, e.g. '.#nixosConfigurations.{name}.config.system.build.toplevel'
A host that gets no system from either is an error. Relative flake references and files
(ssh's, secrets', a machines file, a bearer token) are relative to the fleet file's
directory: with --out, those of the base and of --system (named from the current directory)
are rewritten for the output's directory; on stdout they are kept as given. An --out that
is a symbolic link replaces the file it names, and is written for the link's directory,
where the fleet is read.

Health checks: Terraform knows none, so they come from the base's "policy" (health.commands
and health.http, with the rest of the policy); without --base the fleet has none, and a
deploy switches hosts without checking them. Command checks run on the host in every mode.
HTTP checks run where the activation is driven: for ssm and ssh hosts on the machine that
runs 'nixship deploy', against the host's "address" (so the checked port must be open to
it; examples/aws opens none), for agent hosts on the host itself, with {address} 127.0.0.1.

Host keys (--via ssh, --known-hosts FILE): nixship checks ssh host keys strictly, so each
host's ssh-ed25519 key is merged into FILE, one line per host naming its public_ip and
private_ip, and the fleet's ssh.knownHosts names FILE. The key is the host's
ssh_host_public_key output; a host without one (the host module without
generate_ssh_host_key) publishes its own key to the fleet's store at first boot, and it is
read from there (status/host-keys/HOST.pub in cache_url; at most ${STORE_READ_TIMEOUT} s for all).
A host that has published nothing yet is named on stderr and left out of FILE: run this
again once it has booted. FILE is replaced atomically and only when it changes; the lines
of other hosts, comments and other key types stay. A host whose name FILE already gives
another ssh-ed25519 key (or the base fleet another hostKey) is refused, and nothing is
written, unless --replace-host-keys.

Errors name the JSON path in OUTPUT_JSON (e.g. hosts.value.web1.instance_id). The fleet
written is checked with the fleet loader before it is written.

Example (nixship.base.json as in examples/aws/README.md: the systems, cache.publicKeys,
releases, and a policy with a command check):
  terraform -chdir=examples/aws output -json > tf-outputs.json
  nixship fleet from-terraform tf-outputs.json --base nixship.base.json --out nixship.json
  nixship deploy --fleet nixship.json --on @web --via ssm --key cache.sec

  nixship fleet from-terraform tf-outputs.json --via ssh --base nixship.base.json \\
    --known-hosts known_hosts --out nixship.json

Options:
  --via MODE           ssm (default), ssh or agent: how every host is reached
  --base FLEET         the base fleet file (see above)
  --system TEMPLATE    the system template (see above)
  --tag-keys K,...     more instance tag keys whose values become fleet tags (Role always)
  --cache-key KEY      a public key (name:base64, or a file of them) the hosts trust for the
                       cache; repeat for several (default: the base's cache.publicKeys)
  --substituter URL    where hosts substitute from (default: the base's cache.substituter;
                       else, for ssm hosts, cache_url when it is an s3:// URL)
  --out FILE           write the fleet file atomically to FILE instead of stdout
  --known-hosts FILE   merge the ssh hosts' keys into FILE (created when missing), and name
                       it in the fleet's ssh.knownHosts (a relative FILE relative to --out's
                       directory)
  --replace-host-keys  take a host key that differs from the one FILE (or the base fleet)
                       trusts for that host: only when the host was replaced on purpose
  --json               print what was done as JSON on stdout: {out, via, hosts,
                       notInTerraform, dropped, knownHosts: {file, written, hosts: [{host, names,
                       fingerprint, source, change}], pending: [{host, object, unusable?}]} | null},
                       and without --out the fleet file as "fleet"

Exit codes: 0 written (also when some hosts have published no key yet),
1 a file could not be written, the store could not be read, or a host key changed (then
nothing is written), 2 bad usage or input (a missing output, a host without what its mode
needs, a bad tag value or host key, input that is not JSON, a base fleet that does not load).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        via: { type: "string" },
        base: { type: "string" },
        system: { type: "string" },
        "tag-keys": { type: "string" },
        "cache-key": { type: "string", multiple: true },
        substituter: { type: "string" },
        out: { type: "string" },
        "known-hosts": { type: "string" },
        "replace-host-keys": { type: "boolean" },
        json: { type: "boolean" },
      },
      COMMAND,
    );
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length === 0
          ? `${COMMAND}: name the file that holds 'terraform output -json' (or - for stdin)`
          : `${COMMAND}: unexpected argument '${positionals[1]}'`,
        `see 'nixship ${COMMAND} --help'`,
      );
    }
    const input = positionals[0] as string;
    const via = parseVia(values.via);
    const knownHostsFile = values["known-hosts"];
    if (knownHostsFile !== undefined && via !== "ssh") {
      throw new UsageError(
        `${COMMAND}: --known-hosts is for --via ssh; ${via} hosts get their key as "hostKey" in the fleet file instead`,
      );
    }
    if (knownHostsFile === "" || knownHostsFile === "-") {
      throw new UsageError(`${COMMAND}: --known-hosts must name a file`);
    }
    const outDir = values.out === undefined ? undefined : dirname(resolve(values.out));
    const base = values.base === undefined ? undefined : await readBase(values.base, io, outDir);
    const cacheKeys =
      values["cache-key"] === undefined
        ? undefined
        : (await readTrustedKeys(values["cache-key"], "--cache-key")).map(formatPublicKey);
    checkSettings({ via, base, systemTemplate: values.system, cacheKeys });
    const source = input === "-" ? "stdin" : input;
    const outputsText = await readInputText(
      input,
      io.stdin,
      "the Terraform outputs",
      MAX_FLEET_JSON,
    );
    let outputs: unknown;
    try {
      outputs = parseJsonText(outputsText, source);
    } catch (err) {
      if (!(err instanceof InputError) || err.code !== "bad-json") throw err;
      throw new InputError(err.code, err.message, {
        hint: "give what 'terraform output -json' prints (without -json, Terraform prints its own format, not JSON)",
      });
    }
    const replace = values["replace-host-keys"] === true;
    const made = fleetFromTerraform(
      outputs,
      {
        via,
        tagKeys: parseTagKeys(values["tag-keys"]),
        base,
        // Named from here; the fleet names it from its own directory.
        systemTemplate:
          values.system === undefined || outDir === undefined
            ? values.system
            : relocateInstallable(values.system, process.cwd(), outDir),
        cacheKeys,
        substituter: values.substituter,
        replaceHostKeys: replace,
        // As the fleet file names it: relative to its directory, unless given absolute.
        knownHosts:
          knownHostsFile === undefined || outDir === undefined || isAbsolute(knownHostsFile)
            ? knownHostsFile
            : relative(outDir, resolve(knownHostsFile)),
      },
      source,
    );
    // Everything is read and checked before anything is written: the fleet file's place too.
    if (values.out !== undefined) {
      await checkOutputFile(values.out);
      await refuseSameFile(values.out, [
        { file: input, what: "OUTPUT_JSON, the Terraform outputs" },
        { file: values.base, what: "--base, the base fleet" },
        { file: knownHostsFile, what: "--known-hosts" },
      ]);
    }
    // Hosts of the file --out replaces that the new fleet does not name: said, not lost unsaid.
    const dropped =
      values.out === undefined ? [] : await hostsDropped(values.out, made.fleet.hosts);
    const known =
      knownHostsFile === undefined
        ? undefined
        : await knownHostsUpdate(knownHostsFile, made, replace);
    if (made.notInTerraform.length > 0) {
      io.stderr.write(
        `note: left out hosts of the base fleet that Terraform does not list: ${namesShown(made.notInTerraform, HOSTS_NAMED)}\n`,
      );
    }
    if (dropped.length > 0) {
      io.stderr.write(
        `note: ${values.out} named hosts that neither the base fleet nor Terraform does, now gone from it: ${namesShown(dropped, HOSTS_NAMED)} (add them to the base to keep them)\n`,
      );
    }
    if (known !== undefined) {
      if (known.merge.changed) await writeKnownHosts(known.file, known.merge.text);
      reportKnownHosts(known, io.stderr);
    }
    const text = formatJson(made.doc);
    if (values.out === undefined) {
      if (values.json !== true) io.stdout.write(text);
    } else {
      await writeOutputFile(values.out, text);
      io.stderr.write(`wrote ${values.out}: ${made.fleet.hosts.length} ${via} hosts\n`);
    }
    if (values.json === true) {
      writeJson(io, {
        out: values.out ?? null,
        via,
        hosts: made.fleet.hosts.length,
        notInTerraform: made.notInTerraform,
        dropped,
        knownHosts:
          known === undefined
            ? null
            : {
                file: known.file,
                written: known.merge.changed,
                hosts: known.merge.hosts.map(({ host, names, fingerprint, source, change }) => ({
                  host,
                  names,
                  fingerprint,
                  source,
                  change,
                })),
                pending: known.pending.map(({ host, unusable }) => ({
                  host,
                  object: hostKeyObjectKey(host),
                  ...(unusable === undefined ? {} : { unusable }),
                })),
              },
        ...(values.out === undefined ? { fleet: made.doc } : {}),
      });
    }
    return 0;
  },
};

/** Refuses flags that could never make a loadable fleet, before the input is read. */
function checkSettings(given: {
  via: DeliveryMode;
  base: Fleet | undefined;
  systemTemplate: string | undefined;
  cacheKeys: readonly string[] | undefined;
}): void {
  const { via, base, systemTemplate } = given;
  if (base === undefined && systemTemplate === undefined) {
    throw new UsageError(
      `${COMMAND}: Terraform does not know what each host runs: give --base FLEET (a fleet file that names the hosts' systems) or --system TEMPLATE`,
      "e.g. --system '.#nixosConfigurations.{name}.config.system.build.toplevel'",
    );
  }
  if (systemTemplate !== undefined) checkSystemTemplate(systemTemplate);
  if ((given.cacheKeys ?? base?.cache?.publicKeys ?? []).length === 0) {
    throw new UsageError(
      `${COMMAND}: the fleet's cache needs the public keys its hosts trust: give --cache-key KEY, or a --base fleet with cache.publicKeys`,
    );
  }
  if (via === "agent" && base?.releases === undefined) {
    throw new UsageError(
      `${COMMAND}: agent hosts follow signed releases: --base must name a fleet with a "releases" section (channel and public keys)`,
    );
  }
}

function checkSystemTemplate(template: string): void {
  const unknown = /\{(?!name\})[^}]*\}/.exec(template);
  if (unknown !== null) {
    throw new UsageError(
      `${COMMAND}: --system fills in only {name}, not ${unknown[0]}, in '${template}'`,
    );
  }
  if (systemSpec(template.replaceAll(SYSTEM_TEMPLATE_PLACEHOLDER, "web1")) === undefined) {
    throw new UsageError(
      `${COMMAND}: --system must give a flake installable or a store path, got '${template}'`,
      "e.g. --system '.#nixosConfigurations.{name}.config.system.build.toplevel'",
    );
  }
}

function parseVia(text: string | undefined): DeliveryMode {
  if (text === undefined) return "ssm";
  if ((DELIVERY_MODES as readonly string[]).includes(text)) return text as DeliveryMode;
  throw new UsageError(
    `${COMMAND}: --via must be one of ${DELIVERY_MODES.join(", ")}, got '${text}'`,
  );
}

/** `--tag-keys Env,Team`: AWS tag keys, separated by commas. */
function parseTagKeys(text: string | undefined): string[] {
  if (text === undefined) return [];
  const keys = text.split(",").map((k) => k.trim());
  if (keys.some((k) => k === "")) {
    throw new UsageError(
      `${COMMAND}: --tag-keys takes tag keys separated by commas, got '${text}'`,
    );
  }
  return keys;
}

/** The base fleet, its relative paths rewritten for the output's directory when there is one. */
async function readBase(
  file: string,
  io: { stdin: NodeJS.ReadableStream },
  outDir: string | undefined,
): Promise<Fleet> {
  if (file === "-") throw new UsageError(`${COMMAND}: --base must name a file, not stdin`);
  const fleet = parseFleet(
    await readInputText(file, io.stdin, "the base fleet", MAX_FLEET_JSON),
    file,
  );
  return outDir === undefined ? fleet : relocateFleet(fleet, dirname(resolve(file)), outDir);
}

/** Refuses an --out that is one of the files the command reads: the fleet would replace it. */
async function refuseSameFile(
  out: string,
  read: readonly { readonly file: string | undefined; readonly what: string }[],
): Promise<void> {
  const outFile = await fileIdentity(out);
  if (outFile === undefined) return;
  for (const { file, what } of read) {
    if (file === undefined || file === "-") continue;
    if ((await fileIdentity(file)) === outFile) {
      throw new UsageError(
        `${COMMAND}: --out ${out} is the file given as ${what}: the fleet written would replace it`,
        "name another file for --out (e.g. nixship.json beside the base fleet)",
      );
    }
  }
}

/** The device and inode of the file at `file` (links followed), or undefined when there is none. */
async function fileIdentity(file: string): Promise<string | undefined> {
  const info = await stat(file).catch(() => undefined);
  return info === undefined ? undefined : `${info.dev}:${info.ino}`;
}

/**
 * The hosts the fleet file at `file` names that `hosts` does not: what replacing it loses. A
 * file that is not there, or empty (no bytes, or `{}`), loses none; one that holds something else than a fleet
 * file (another tool's file, named by mistake) is refused, not replaced.
 */
async function hostsDropped(file: string, hosts: readonly FleetHost[]): Promise<string[]> {
  // The file itself, whatever its name ("-" too): never stdin.
  const notAFleet = (why: string) =>
    new InputError(
      "out-not-a-fleet",
      `${COMMAND}: --out ${file} holds ${why}, no fleet file: it is not replaced`,
      { hint: "name a new file for --out, or move that one away first" },
    );
  const bytes = await readFileBounded(file, MAX_FLEET_JSON, () =>
    notAFleet(`more than ${MAX_FLEET_JSON / 1024 / 1024} MiB`),
  );
  if (bytes === undefined || bytes.length === 0) return [];
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw notAFleet("text that is not JSON");
  }
  // An empty object holds nothing to lose.
  if (isJsonObject(doc) && Object.keys(doc).length === 0) return [];
  const named = (doc as { hosts?: unknown } | null)?.hosts;
  if (typeof named !== "object" || named === null || Array.isArray(named)) {
    throw notAFleet('JSON without a "hosts" object');
  }
  const kept = new Set(hosts.map((h) => h.name));
  return Object.keys(named).filter((name) => !kept.has(name));
}
