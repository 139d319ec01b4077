// `nixship init`: a starting fleet for the flake in a directory, one host per NixOS
// configuration (or, with --from, per node of a colmena hive or deploy-rs flake), with a cache
// and a signing key (kept out of the flake), and the next commands.

import { createHash, randomBytes } from "node:crypto";
import { existsSync, realpathSync } from "node:fs";
import { link, open, rename, stat, unlink } from "node:fs/promises";
import { homedir, userInfo } from "node:os";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { ensureCacheInfo } from "../cache/cache-info.js";
import { listFlakeConfigurations } from "../deploy/flake-configurations.js";
import { readColmenaHive, readDeployRs } from "../deploy/read-foreign-fleet.js";
import { InputError, UsageError } from "../errors.js";
import { conversionProblems, fleetProblems } from "../fleet/conversion-check.js";
import { NAME_MAX_LENGTH, NAME_PATTERN } from "../fleet/fleet.js";
import { formatJson } from "../fleet/fleet-json.js";
import {
  type Conversion,
  conversionJson,
  conversionNix,
  SSH_CONFIG_FILE,
} from "../fleet/foreign-fleet.js";
import { convertColmena } from "../fleet/from-colmena.js";
import { convertDeployRs } from "../fleet/from-deploy-rs.js";
import { fleetOutputLine, hostsToFill, initFleetJson, initFleetNix } from "../fleet/init-fleet.js";
import type { Problem } from "../fleet/json-check.js";
import { formatJsonPath } from "../fleet/json-path.js";
import { DEFAULT_FLEET_OUTPUT } from "../fleet/load-flake-fleet.js";
import { DEFAULT_FLEET_FILE } from "../fleet/load-fleet.js";
import type { SshAlias } from "../fleet/ssh-alias.js";
import { gitTopLevel } from "../nix/git-flake.js";
import { formatPublicKey, generateSecretKey, publicKeyOf, type SecretKey } from "../nix/keys.js";
import { openStore, parseStoreUrl } from "../store/url.js";
import { conversionReportLines } from "../ui/conversion-report.js";
import { requireReplaceable } from "../util/atomic-file.js";
import { onLastWord } from "../util/last-words.js";
import { makeDirs } from "../util/make-dirs.js";
import { shellWord } from "../util/shell-quote.js";
import { type CliIO, type Command, parseFlags, writeJson } from "./command.js";
import { writeSecretKeyFile } from "./key-file.js";
import { readSecretKeyFile } from "./keys-input.js";
import { checkOutputFile, writeOutputFile } from "./output-file.js";
import { readSshAliases } from "./ssh-aliases.js";

const COMMAND = "init";
const FORMATS = ["nix", "json"] as const;
type Format = (typeof FORMATS)[number];
const SOURCES = ["colmena", "deploy-rs"] as const;
type Source = (typeof SOURCES)[number];
/** The Nix file `--format nix` writes beside flake.nix. */
const NIX_FLEET_FILE = "nixship.nix";
/** The directory cache made beside the flake unless --cache names one. */
const DEFAULT_CACHE_DIR = ".nixship-cache";

export const initCommand: Command = {
  path: ["init"],
  summary: "write a starting fleet from the flake's nixosConfigurations (and a cache and key)",
  help: `Usage: nixship init [DIR] [--from colmena|deploy-rs] [--format nix|json] [--cache URL]
                    [--key-out FILE] [--key-name NAME] [--force] [--json]

Run in the directory of a flake (or name it: DIR). Lists the flake's nixosConfigurations
with one 'nix eval' (their names, and each one's config.nixship.deployment when it imports
nixship's nixosModules.deployment; nothing is built) and writes a starting fleet:
  - one host per configuration, named as it and running its system, with the tags, address,
    delivery, ... its nixship.deployment sets; a host whose address is unknown gets the
    placeholder "FILL IN: the host's address", which every command (plan, deploy, doctor)
    refuses, naming the host, until it is filled in;
  - the cache: --cache URL, else a directory cache beside the flake (file://DIR/${DEFAULT_CACHE_DIR})
    in a git repository; else one outside it, which Nix would copy whole with the flake
    ($XDG_DATA_HOME/nixship/caches/NAME-HASH),
    made as 'nixship cache init' makes one (an s3:// cache is left for 'cache init');
  - the signing key (as 'nixship key generate' writes it, mode 0600), outside the flake's
    directory, since a flake is copied into the world-readable Nix store: --key-out FILE,
    else \${XDG_CONFIG_HOME:-~/.config}/nixship/NAME.sec; a key already there is used, not
    replaced. Its public key is the fleet's cache.publicKeys.
Then it prints the next commands.

--format nix (the default): writes DIR/${NIX_FLEET_FILE}, the fleet as a Nix function of the flake
(lib.fleetFromConfigurations when a configuration imports the module), and prints the line
to add to the flake's outputs, e.g.
  ${DEFAULT_FLEET_OUTPUT} = import ./${NIX_FLEET_FILE} { inherit self; nixshipLib = nixship.lib; };
flake.nix itself is never rewritten. A flake that already has a '${DEFAULT_FLEET_OUTPUT}' output has its
fleet: init says so and writes nothing.
--format json: writes DIR/${DEFAULT_FLEET_FILE}, a fleet file; in a flake that has a '${DEFAULT_FLEET_OUTPUT}' output
it refuses (the file would take the output's place for commands without --fleet) unless --force.

--from colmena: one host per node of the flake's colmena hive: its colmenaHive output (colmena's
makeHive), else its colmena output, else DIR/hive.nix, evaluated with Nix (raw hives by nixship's
lib.readColmenaHive, with the hive's own nixpkgs); --from deploy-rs: one host per node of the
flake's deploy.nodes, running its system profile. Each node's options become the host's
(targetHost, targetUser, tags, keys as secrets; hostname, sshUser, magicRollback, timeouts, ...);
ssh settings (targetPort, sshOptions, sshOpts) go in a block of the host's own in
DIR/${SSH_CONFIG_FILE}, which the fleet names as its ssh.configFile (and which includes the
ssh_config ssh read before), with what that ssh_config gave the node's address (an alias's
HostName, Port, ProxyJump, ..., asked of ssh -G); init prints what it carried over, what maps to what, and what it
left behind and why (docs/coming-from-colmena.md, docs/coming-from-deploy-rs.md). A colmena
node whose targetHost is null (apply-local only) is left out, as colmena apply skips it. A node
nixship cannot reach (no hostname, no system profile) or an evaluation error is named by its
attribute.

Nothing is written until the flake is read and the fleet to write is checked as every command
loads it (a value of nixship.deployment or of a node the fleet refuses is named, and init
stops); each file is written whole (a temporary file, renamed), and an existing fleet file is
kept unless --force.

Options:
  --from TOOL        convert the fleet of colmena or deploy-rs in the flake
  --format nix|json  the fleet in the flake (nix, default) or a fleet file (json)
  --cache URL        the fleet's cache (default: file://DIR/${DEFAULT_CACHE_DIR} in a git
                     repository, else under $XDG_DATA_HOME/nixship/caches/)
  --key-out FILE     where the secret signing key is (default: see above); not in DIR
  --key-name NAME    the key's name (default: nixship-DIRNAME-1)
  --force            replace an existing ${NIX_FLEET_FILE} or ${DEFAULT_FLEET_FILE} (and ${SSH_CONFIG_FILE}); write
                     ${NIX_FLEET_FILE} beside a ${DEFAULT_FLEET_FILE}, which commands without --fleet read first
                     (refused without it)
  --json             one JSON object on stdout: flake (DIR), format, from (with --from),
                     written (the files written), fleet (the fleet file), hosts (their names),
                     cache {url, created}, key {file, publicKey, created}, outputLine (the
                     line to add to the flake's outputs, nix format), next (the commands to
                     run next, as shell lines: a note among them starts with '#'); without --from also placeholders (what to fill in) and
                     skipped (configurations that are no host name); with --from, report
                     (what was carried over, mapped and left behind). A flake that has its
                     fleet already: {flake, format, written: [], said, next}

Exit codes: 0 written (or the flake has its fleet already), 1 failed, 2 bad usage or input
(DIR is no flake, the flake has no nixosConfigurations, or no hive or deploy output for --from,
the fleet file exists or would shadow the flake's fleet, the key would be in the flake).`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      {
        format: { type: "string" },
        from: { type: "string" },
        cache: { type: "string" },
        "key-out": { type: "string" },
        "key-name": { type: "string" },
        force: { type: "boolean" },
        json: { type: "boolean" },
      },
      COMMAND,
    );
    if (positionals.length > 1) {
      throw new UsageError(`${COMMAND}: unexpected argument '${positionals[1]}'`);
    }
    const format = parseFormat(values.format);
    const from = parseSource(values.from);
    const dir = resolve(positionals[0] ?? ".");
    await requireFlake(dir, from);
    const fleetFile = join(dir, format === "nix" ? NIX_FLEET_FILE : DEFAULT_FLEET_FILE);
    // A fleet file is refused before Nix runs; nixship.nix after, as the flake may already
    // hold the fleet (then init says so, whatever files there are).
    if (format === "json") refuseExisting(fleetFile, values.force === true);
    // A fleet file beside the flake is what every command without --fleet reads: the Nix fleet
    // written here would be passed over.
    const shadowedBy = format === "nix" ? join(dir, DEFAULT_FLEET_FILE) : undefined;
    if (shadowedBy !== undefined && existsSync(shadowedBy) && values.force !== true) {
      throw new InputError(
        "fleet-exists",
        `${shadowedBy} beside the flake would take the place of the fleet init writes (${NIX_FLEET_FILE}, the flake's '${DEFAULT_FLEET_OUTPUT}' output) for every command run without --fleet; nothing written`,
        {
          hint: `move ${DEFAULT_FLEET_FILE} away once its hosts are in the flake, or pass --force to write ${NIX_FLEET_FILE} all the same (and name it: --fleet ${dir}#${DEFAULT_FLEET_OUTPUT})`,
        },
      );
    }
    const nameFlakeFleet = shadowedBy !== undefined && existsSync(shadowedBy);
    const keyName = values["key-name"] ?? defaultKeyName(dir);
    const keyOut = resolve(values["key-out"] ?? defaultKeyFile(keyName, io.env));
    refuseKeyInFlake(keyOut, dir);
    // Read, or made, before the flake is: a bad key or key name stops init before Nix runs.
    const key = await readOrMakeKey(keyOut, keyName);
    const publicKey = formatPublicKey(publicKeyOf(key.key));
    const cacheUrl = values.cache ?? `file://${await defaultCacheDir(dir, io.env)}`;
    // Before anything is written: a URL the fleet file would refuse (one holding credentials,
    // above all) never reaches it, nor the flake that Nix copies into the store.
    try {
      parseStoreUrl(cacheUrl, io.env);
    } catch (err) {
      if (err instanceof InputError) err.message = `--cache: ${err.message}`;
      throw err;
    }
    const localCache = cacheUrl.startsWith("file://");

    if (from !== undefined) {
      refuseExisting(fleetFile, values.force === true);
      const { conversion, flake, hasFleet, oldCommand } = await convertFrom(from, dir, io.env);
      if (format === "nix" && hasFleet) return saidHasFleet(io, dir, format, values.json === true);
      if (hasFleet) refuseShadowing(dir, fleetFile, values.force === true);
      const settings = { cacheUrl, publicKey };
      // What the fleet could not hold stops init here, before anything is written.
      refuseUnloadable(
        conversionProblems(conversion, settings),
        "conversion-refused",
        `${COMMAND} --from ${from}: the fleet converted from ${dir} would not load`,
        `change those settings in the ${from === "colmena" ? "hive" : "deploy-rs flake"} (or leave them out), then convert again; nothing was written`,
      );
      // The fleet file's place is checked before the key and the cache are made, and so is
      // that of the ssh_config it names.
      await checkFleetFilePlace(fleetFile);
      const sshConfigFile = conversion.sshConfig === null ? null : join(dir, SSH_CONFIG_FILE);
      if (sshConfigFile !== null) {
        refuseExisting(sshConfigFile, values.force === true);
        await checkFleetFilePlace(sshConfigFile);
      }
      // The cache first: one that cannot be made (a file, a bad nix-cache-info) leaves no key.
      const cacheCreated = localCache ? await initCache(cacheUrl) : null;
      await writeKey(keyOut, key);
      const text =
        format === "json"
          ? formatJson(conversionJson(conversion, settings))
          : conversionNix(conversion, settings, [
              `The fleet nixship deploys (docs/fleet.md), written by 'nixship init --from ${from}'. It is`,
              "the flake's `nixship` output: add to the flake's outputs the line 'nixship init' printed.",
            ]);
      await writeWithSshConfig(
        { file: fleetFile, text },
        sshConfigFile === null
          ? null
          : { file: sshConfigFile, text: conversion.sshConfig as string },
        values.force === true,
      );
      const outputLine =
        format === "nix"
          ? `${DEFAULT_FLEET_OUTPUT} = import ./${NIX_FLEET_FILE} { inherit self;${conversion.needsLib ? " nixshipLib = nixship.lib;" : ""} };`
          : conversion.jsonOutputLine;
      const fleetFlag = ` --fleet ${shellWord(format === "json" ? fleetFile : `${dir}#${DEFAULT_FLEET_OUTPUT}`)}`;
      const throughSudo = sudoHosts(conversion);
      const next = nextCommands({
        first: [
          ...bootstrapSteps(from, dir, oldCommand, throughSudo),
          // A git flake holds only the files git tracks: the fleet it now imports must be one.
          ...(flake.startsWith("git+file:") && format === "nix"
            ? [`git -C ${shellWord(dir)} add ${NIX_FLEET_FILE}`]
            : []),
        ],
        cacheInit: localCache ? undefined : cacheUrl,
        afterCache: [
          // A note ('# ...', a key not carried over) takes no flag.
          ...conversion.next.map((c) => (c.startsWith("#") ? c : `${c}${fleetFlag}`)),
          // The fleet reaches those hosts through it: said where the user looks, before doctor.
          ...(sshConfigFile === null
            ? []
            : [
                `# the hosts' ssh settings are in ${sshConfigFile}, the fleet's ssh.configFile: doctor tries them`,
              ]),
        ],
        fleetFlag,
        keyOut,
      });
      const written = [
        ...(key.created ? [keyOut] : []),
        ...(sshConfigFile === null ? [] : [sshConfigFile]),
        fleetFile,
      ];
      if (values.json === true) {
        writeJson(io, {
          flake: dir,
          from,
          format,
          written,
          fleet: fleetFile,
          hosts: conversion.hosts.map((h) => h.name),
          report: conversion.report,
          cache: { url: cacheUrl, created: cacheCreated },
          key: { file: keyOut, publicKey, created: key.created },
          outputLine,
          next,
        });
        return 0;
      }
      const names = conversion.hosts.map((h) => h.name);
      const lines = [
        ...writtenLines(
          `${fleetFile} from ${from}`,
          names,
          cacheUrl,
          cacheCreated,
          keyOut,
          key.created,
          publicKey,
        ),
        ...(sshConfigFile === null
          ? []
          : [
              `wrote ${sshConfigFile}: the hosts' ssh settings (port, identity, jump host, ...), each in a block of its own, then the ssh_config ssh read before; the fleet's ssh.configFile names it`,
            ]),
        ...conversionReportLines(conversion.report),
        ...(throughSudo.length === 0 ? [] : [bootstrapLine(from, throughSudo)]),
      ];
      if (outputLine !== null) {
        lines.push(`add this line to the outputs of ${join(dir, "flake.nix")}:`, `  ${outputLine}`);
        if (outputLine.includes("nixship.lib")) lines.push("  (nixship: a flake input of nixship)");
      }
      if (cacheUrl === `file://${join(dir, DEFAULT_CACHE_DIR)}`)
        lines.push(`keep ${DEFAULT_CACHE_DIR}/ out of git (.gitignore)`);
      if (conversion.secrets !== null) {
        lines.push(
          `fill in secrets.admins (an age recipient who may edit them) in ${fleetFile}, then set each secret as below`,
        );
      }
      lines.push("next:", ...next.map((c) => `  ${c}`));
      io.stderr.write(`${lines.join("\n")}\n`);
      return 0;
    }

    const listed = await listFlakeConfigurations(dir, DEFAULT_FLEET_OUTPUT);
    if (format === "nix" && listed.hasFleet) {
      return saidHasFleet(io, dir, format, values.json === true);
    }
    if (listed.hasFleet) refuseShadowing(dir, fleetFile, values.force === true);
    refuseExisting(fleetFile, values.force === true);
    const skipped = listed.configurations.filter((c) => !validHostName(c.name)).map((c) => c.name);
    const configurations = listed.configurations.filter((c) => validHostName(c.name));
    if (configurations.length === 0) {
      throw new InputError(
        "no-configurations",
        `${join(dir, "flake.nix")}: no nixosConfigurations named as a host can be (${skipped.join(", ")})`,
        { hint: "host names are lowercase letters, digits and '-': rename a configuration" },
      );
    }

    const settings = { cacheUrl, publicKey };
    // The configurations' nixship.deployment is copied as it is (the module's types are loose):
    // what the fleet loader would refuse stops init here, whichever format it writes (the Nix
    // one reads the same values when the fleet is loaded).
    refuseUnloadable(
      fleetProblems(initFleetJson(configurations, settings)),
      "init-refused",
      `${COMMAND}: the fleet from the configurations in ${join(dir, "flake.nix")} would not load`,
      "change those in the configurations' nixship.deployment (hosts.NAME is nixosConfigurations.NAME's; policies.NAME its policy), then run init again; nothing was written",
    );
    // Everything is read and checked (the fleet file's place too): now the key, the cache, and
    // the fleet last.
    await checkFleetFilePlace(fleetFile);
    // The cache first: one that cannot be made (a file, a bad nix-cache-info) leaves no key.
    const cacheCreated = localCache ? await initCache(cacheUrl) : null;
    await writeKey(keyOut, key);
    const text =
      format === "json"
        ? formatJson(initFleetJson(configurations, settings))
        : initFleetNix(configurations, settings, skipped);
    await writeFleetFile(fleetFile, text, values.force === true);

    const toFill = hostsToFill(configurations);
    const here = resolve(".") === dir;
    const fleetFlag =
      format === "json"
        ? here
          ? ""
          : ` --fleet ${fleetFile}`
        : here && !nameFlakeFleet
          ? ""
          : ` --fleet ${dir}#${DEFAULT_FLEET_OUTPUT}`;
    const outputLine =
      format === "nix"
        ? fleetOutputLine(configurations, DEFAULT_FLEET_OUTPUT, `./${NIX_FLEET_FILE}`)
        : null;
    const next = nextCommands({
      first:
        listed.flake.startsWith("git+file:") && format === "nix"
          ? [`git -C ${dir} add ${NIX_FLEET_FILE}`]
          : [],
      cacheInit: localCache ? undefined : cacheUrl,
      afterCache: [],
      fleetFlag,
      keyOut,
    });
    const written = [...(key.created ? [keyOut] : []), fleetFile];
    if (values.json === true) {
      writeJson(io, {
        flake: dir,
        format,
        written,
        fleet: fleetFile,
        hosts: configurations.map((c) => c.name),
        placeholders: toFill,
        skipped,
        cache: { url: cacheUrl, created: cacheCreated },
        key: { file: keyOut, publicKey, created: key.created },
        outputLine,
        next,
      });
      return 0;
    }
    const lines = writtenLines(
      fleetFile,
      configurations.map((c) => c.name),
      cacheUrl,
      cacheCreated,
      keyOut,
      key.created,
      publicKey,
    );
    if (skipped.length > 0) {
      lines.push(`left out (not a valid host name): ${skipped.join(", ")}`);
    }
    if (outputLine !== null) {
      lines.push(`add this line to the outputs of ${join(dir, "flake.nix")}:`, `  ${outputLine}`);
      if (outputLine.includes("nixship.lib")) {
        lines.push("  (nixship: the flake input nixosModules.deployment comes from)");
      }
    }
    if (toFill.length > 0) {
      lines.push(
        format === "json"
          ? `fill in the address of ${toFill.join(", ")} in ${fleetFile}`
          : `fill in the address of ${toFill.join(", ")} (see ${fleetFile})`,
      );
    }
    // In the flake's directory (a git flake's): git must not track it.
    if (cacheUrl === `file://${join(dir, DEFAULT_CACHE_DIR)}`)
      lines.push(`keep ${DEFAULT_CACHE_DIR}/ out of git (.gitignore)`);
    lines.push("next:", ...next.map((c) => `  ${c}`));
    io.stderr.write(`${lines.join("\n")}\n`);
    return 0;
  },
};

/** The commands to run next, in order, after `first` (and the cache's creation when remote). */
/**
 * Fails, before the key and the cache are made, when the fleet file could not be written: its
 * place holds something else than a file, or its directory cannot take a file (missing, not
 * writable, a read-only file system).
 */
async function checkFleetFilePlace(fleetFile: string): Promise<void> {
  await requireReplaceable(fleetFile);
  await checkOutputFile(fleetFile);
}

function nextCommands(o: {
  readonly first: readonly string[];
  readonly cacheInit: string | undefined;
  readonly afterCache: readonly string[];
  readonly fleetFlag: string;
  readonly keyOut: string;
}): string[] {
  return [
    ...o.first,
    ...(o.cacheInit === undefined ? [] : [`nixship cache init ${shellWord(o.cacheInit)}`]),
    ...o.afterCache,
    `nixship doctor${o.fleetFlag}`,
    `nixship plan${o.fleetFlag}`,
    `nixship deploy${o.fleetFlag} --key ${shellWord(o.keyOut)}`,
  ];
}

/** What was written: the fleet and its hosts, the cache, and the signing key. */
function writtenLines(
  fleet: string,
  hosts: readonly string[],
  cacheUrl: string,
  cacheCreated: boolean | null,
  keyOut: string,
  keyCreated: boolean,
  publicKey: string,
): string[] {
  return [
    `wrote ${fleet}: ${hosts.length} host${hosts.length === 1 ? "" : "s"} (${hosts.join(", ")})`,
    `cache: ${cacheUrl}${cacheCreated === true ? " (created)" : ""}`,
    `signing key: ${keyOut} (${keyCreated ? "created" : "already there, used"}); public key ${publicKey}`,
  ];
}

function parseFormat(text: string | undefined): Format {
  if (text === undefined) return "nix";
  if ((FORMATS as readonly string[]).includes(text)) return text as Format;
  throw new UsageError(`${COMMAND}: --format takes nix or json, got '${text}'`);
}

function parseSource(text: string | undefined): Source | undefined {
  if (text === undefined) return undefined;
  if ((SOURCES as readonly string[]).includes(text)) return text as Source;
  throw new UsageError(`${COMMAND}: --from takes colmena or deploy-rs, got '${text}'`);
}

/** A flake that has its fleet already: init says so, writes nothing, and exits 0. */
function saidHasFleet(io: CliIO, dir: string, format: string, json: boolean): number {
  const said = `${join(dir, "flake.nix")} already has a '${DEFAULT_FLEET_OUTPUT}' output: that is the fleet; nothing written`;
  const next = ["nixship doctor", "nixship plan"];
  if (json) writeJson(io, { flake: dir, format, written: [], said, next });
  else io.stderr.write(`${said}\nnext: ${next.join("; ")}\n`);
  return 0;
}

/** The other tool's fleet in `dir`, read with Nix and converted. */
async function convertFrom(
  from: Source,
  dir: string,
  env: NodeJS.ProcessEnv,
): Promise<{
  readonly conversion: Conversion;
  readonly flake: string;
  readonly hasFleet: boolean;
  /** The other tool's command line for this fleet, before its deploy's own arguments. */
  readonly oldCommand: string;
}> {
  if (from === "colmena") {
    const read = await readColmenaHive(dir);
    const sshConfigFile = env.SSH_CONFIG_FILE ? resolve(env.SSH_CONFIG_FILE) : undefined;
    const convert = (sshAliases?: ReadonlyMap<string, SshAlias>) =>
      convertColmena(read.value, read.label, {
        ...(sshConfigFile === undefined ? {} : { sshConfigFile }),
        flakeDir: resolve(dir),
        ...(sshAliases === undefined ? {} : { sshAliases }),
      });
    const conversion = await withAliases(convert, sshConfigFile);
    // colmena reads a flake's hive from flake.nix, a hive.nix of its own from that file.
    const hive = join(dir, read.value.kind === "hive.nix" ? "hive.nix" : "flake.nix");
    return {
      conversion,
      flake: read.flake,
      hasFleet: read.value.hasFleet === true,
      oldCommand: `colmena -f ${shellWord(hive)}`,
    };
  }
  const read = await readDeployRs(dir);
  const conversion = await withAliases(
    (sshAliases) =>
      convertDeployRs(read.value, read.label, {
        localUser: userInfo().username,
        ...(sshAliases === undefined ? {} : { sshAliases }),
      }),
    undefined,
  );
  return {
    conversion,
    flake: read.flake,
    hasFleet: read.value.hasFleet === true,
    oldCommand: "deploy",
  };
}

/**
 * The conversion, its hosts' blocks completed with what the ssh_config the old tool read gives
 * their addresses (fleet/ssh-alias.ts): converted once to learn the addresses, asked of ssh,
 * and again with what it said where it aliases any.
 */
async function withAliases(
  convert: (aliases?: ReadonlyMap<string, SshAlias>) => Conversion,
  sshConfigFile: string | undefined,
): Promise<Conversion> {
  const first = convert();
  if (first.blockAddresses.length === 0) return first;
  const aliases = await readSshAliases(first.blockAddresses, sshConfigFile);
  return aliases.size === 0 ? first : convert(aliases);
}

/**
 * The converted hosts nixship reaches as a user other than root: it activates there through
 * `sudo -n` and the host's pinned nixship-activate, which only a system that imports
 * nixship.nixosModules.host has; the hive's or deploy-rs's systems do not yet.
 */
function sudoHosts(conversion: Conversion): string[] {
  return conversion.hosts.filter((h) => h.fields.sudo === true).map((h) => h.name);
}

/**
 * The step before nixship's first deploy to `hosts` (sudoHosts), first of the next commands: a
 * comment saying what to add, then the old tool's deploy of those hosts, which activates it.
 * As root nixship needs no such step, but a user other than root is often the only way in.
 */
function bootstrapSteps(
  from: Source,
  dir: string,
  oldCommand: string,
  hosts: readonly string[],
): string[] {
  if (hosts.length === 0) return [];
  const deploy =
    from === "colmena"
      ? `${oldCommand} apply --on ${hosts.join(",")}`
      : `${oldCommand} --targets ${hosts.map((h) => shellWord(`${dir}#${h}`)).join(" ")}`;
  return [
    `# first add nixship.nixosModules.host to the system${hosts.length === 1 ? "" : "s"} of ${hosts.join(", ")}, then activate ${hosts.length === 1 ? "it" : "them"} once with ${from}:`,
    deploy,
  ];
}

/** The report's line on the step bootstrapSteps gives. */
function bootstrapLine(from: Source, hosts: readonly string[]): string {
  return `before nixship's first deploy: ${hosts.join(", ")} ${hosts.length === 1 ? "is" : "are"} reached as a user other than root (hosts.NAME.sudo), so nixship activates there through sudo and the host's nixship-activate, which only a running system that imports nixship.nixosModules.host has: add it to ${hosts.length === 1 ? "that system" : "those systems"} and activate ${hosts.length === 1 ? "it" : "them"} once with ${from} (next, first), or deploy once as root (docs/pinned-hosts.md)`;
}

/** DIR must be a flake's directory: exit 2, naming it and the fix, when it is not. */
async function requireFlake(dir: string, from?: Source): Promise<void> {
  const info = await stat(join(dir, "flake.nix")).catch(() => undefined);
  if (info?.isFile() === true) return;
  if (from === "colmena" && existsSync(join(dir, "hive.nix"))) {
    throw new InputError(
      "not-a-flake",
      `${dir} has a hive.nix but no flake.nix: nixship's fleet takes the hive's systems through a flake`,
      {
        hint: "add a flake.nix beside hive.nix with nixship as an input (its outputs may be empty to start: init prints the line to add), then run nixship init --from colmena again",
      },
    );
  }
  throw new InputError("not-a-flake", `${dir} is no flake's directory: it has no flake.nix`, {
    hint: "run nixship init in the directory of the flake that holds your nixosConfigurations (or name it: nixship init DIR); no flake yet: 'nix flake init'",
  });
}

function refuseExisting(file: string, force: boolean): void {
  if (!existsSync(file) || force) return;
  throw fleetExists(file);
}

function fleetExists(file: string): InputError {
  return new InputError("fleet-exists", `${file} already exists; init leaves it as it is`, {
    hint: "pass --force to replace it, or edit it",
  });
}

/**
 * Writes the fleet file whole. With --force it replaces what is there. Without, the file is
 * written beside its place and linked into it: link() fails where any file is, so one made
 * while Nix evaluated (which may take minutes after refuseExisting looked) is kept, and no
 * moment is left between a check and the write.
 */
async function writeFleetFile(file: string, text: string, force: boolean): Promise<void> {
  if (force) return writeOutputFile(file, text);
  const staged = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString("hex")}.new`);
  const forget = onLastWord(() => unlink(staged).catch(() => {}));
  try {
    await writeOutputFile(staged, text);
    try {
      await link(staged, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw fleetExists(file);
      // A file system without hard links: the check as late as it can be, then the rename.
      refuseExisting(file, false);
      await rename(staged, file);
    }
  } finally {
    await unlink(staged).catch(() => {});
    forget();
  }
  await syncDirectory(dirname(file));
}

/**
 * Writes the fleet, and first the ssh_config it names (when it names one): a fleet is never
 * left naming a file that is not there. Should the fleet not be written (a file made there
 * meanwhile), the ssh_config just made is removed again.
 */
async function writeWithSshConfig(
  fleet: { readonly file: string; readonly text: string },
  sshConfig: { readonly file: string; readonly text: string } | null,
  force: boolean,
): Promise<void> {
  if (sshConfig !== null) await writeFleetFile(sshConfig.file, sshConfig.text, force);
  try {
    await writeFleetFile(fleet.file, fleet.text, force);
  } catch (err) {
    if (sshConfig !== null && !force) await unlink(sshConfig.file).catch(() => {});
    throw err;
  }
}

/** Flushes a directory, so that a file linked into it is there after a power cut too. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * A fleet file beside a flake that has its fleet already: commands without --fleet would read
 * the file first, and so leave the flake's fleet unread.
 */
function refuseShadowing(dir: string, file: string, force: boolean): void {
  if (force) return;
  throw new InputError(
    "fleet-exists",
    `${join(dir, "flake.nix")} already has a '${DEFAULT_FLEET_OUTPUT}' output, its fleet: ${file} beside it would take its place for every command run without --fleet; nothing written`,
    {
      hint: "use the flake's fleet as it is, or pass --force to write the fleet file all the same",
    },
  );
}

function validHostName(name: string): boolean {
  return NAME_PATTERN.test(name) && name.length <= NAME_MAX_LENGTH;
}

/** nixship-DIRNAME-1, DIRNAME reduced to what a key name can hold. */
function defaultKeyName(dir: string): string {
  const base = (dir.split("/").pop() ?? "").replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, 40);
  return `nixship-${base || "fleet"}-1`;
}

/**
 * The cache init makes when none is named: beside the flake (DIR/.nixship-cache, to keep out of
 * git) when the flake is in a git work tree, which Nix copies only the tracked files of; else
 * outside it ($XDG_DATA_HOME/nixship/caches/NAME-HASH), as Nix copies a path: flake whole, a
 * cache inside it included, into the store at every evaluation.
 */
async function defaultCacheDir(dir: string, env: NodeJS.ProcessEnv): Promise<string> {
  if ((await gitTopLevel(dir)) !== undefined) return join(dir, DEFAULT_CACHE_DIR);
  const data = env.XDG_DATA_HOME || join(homedir(), ".local", "share");
  const tag = createHash("sha256").update(dir).digest("hex").slice(0, 8);
  return join(data, "nixship", "caches", `${basename(dir) || "fleet"}-${tag}`);
}

function defaultKeyFile(name: string, env: NodeJS.ProcessEnv): string {
  const config = env.XDG_CONFIG_HOME || join(homedir(), ".config");
  return join(config, "nixship", `${name}.sec`);
}

/**
 * A key in the flake's directory would be copied into the world-readable store with it. Both
 * are compared as they really are (a symlink into the flake counts as in it); `..key` is a
 * file's name, not the way out.
 */
function refuseKeyInFlake(keyOut: string, dir: string): void {
  const real = (path: string): string => {
    try {
      return realpathSync(path);
    } catch {
      // Not there yet (the key to make): its directory as it really is.
      const parent = dirname(path);
      return parent === path ? path : join(real(parent), basename(path));
    }
  };
  const rel = relative(real(dir), real(keyOut));
  if (rel === ".." || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return;
  throw new UsageError(
    `${COMMAND}: the signing key ${keyOut} would be inside the flake's directory ${dir}, which Nix copies into the world-readable store`,
    "give --key-out a path outside it (the default is under ~/.config/nixship/)",
  );
}

/** The key at `file` when there is one, else a new one (written by `writeKey`). */
async function readOrMakeKey(
  file: string,
  name: string,
): Promise<{ key: SecretKey; created: boolean }> {
  if (existsSync(file)) return { key: await readSecretKeyFile(file, "--key-out"), created: false };
  return { key: generateSecretKey(name), created: true };
}

/** Writes a new key (0600, in a 0700 directory made if missing). */
async function writeKey(file: string, made: { key: SecretKey; created: boolean }): Promise<void> {
  if (!made.created) return;
  await makeDirs(dirname(file), 0o700);
  await writeSecretKeyFile(file, made.key, false);
}

async function initCache(url: string): Promise<boolean> {
  const store = await openStore(url);
  try {
    return await ensureCacheInfo(store);
  } finally {
    await store.close();
  }
}

/** Refuses, naming up to 20 of them, the problems the fleet loader found in what init would write. */
function refuseUnloadable(
  problems: readonly Problem[],
  code: string,
  what: string,
  hint: string,
): void {
  if (problems.length === 0) return;
  const shown = problems.slice(0, 20).map((p) => `  ${formatJsonPath(p.path)}: ${p.message}`);
  const more = problems.length > 20 ? `\n  … and ${problems.length - 20} more` : "";
  throw new InputError(code, `${what}:\n${shown.join("\n")}${more}`, { hint });
}
