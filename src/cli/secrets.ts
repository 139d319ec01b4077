// `nixship secrets set|edit|rekey|list`: the fleet's age-encrypted secrets. Plaintext comes
// from a file or stdin (never an argument), and is edited only in a tmpfs scratch file.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { lstat, realpath } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { type AgeIdentity, parseIdentities } from "../age/age.js";
import { collectHostKeys, type NewPin, pinnedHostKeys } from "../delivery/host-keys.js";
import { InputError, InterruptedError, OperationError, UsageError } from "../errors.js";
import type { Fleet } from "../fleet/fleet.js";
import { REPLACE_HOST_KEYS_FLAG } from "../fleet/from-terraform.js";
import { STORE_DIR } from "../nix/store-path.js";
import { editorCommand } from "../secrets/editor-command.js";
import { PINS_FILE, pinsPath, readPins } from "../secrets/host-key-pins.js";
import { secretHosts } from "../secrets/recipients.js";
import { MAX_PLAINTEXT } from "../secrets/secret-file.js";
import { editSecret, listSecrets, rekeySecrets, setSecret } from "../secrets/secret-ops.js";
import { secretsCommand } from "../secrets/secrets-command.js";
import { formatSecretsList } from "../ui/secrets-list.js";
import { readFileBounded, readStreamBounded } from "../util/bounded-file.js";
import { errnoWords } from "../util/errno-words.js";
import { type CliIO, type Command, parseFlags, refuseArguments, writeJson } from "./command.js";
import { type FleetInput, readFleetInput } from "./fleet-input.js";
import { trapInterrupts, whileTrapped } from "./interrupts.js";
import { mayBeSecret, readSecretFile } from "./keys-input.js";

const FLAGS = { fleet: { type: "string" }, json: { type: "boolean" } } as const;
const IDENTITY_FLAG = { identity: { type: "string" } } as const;
const REPLACE_FLAG = { "replace-host-keys": { type: "boolean" } } as const;

const PINS_NOTE = `
The keys of ssm and agent hosts without a hostKey in the fleet file come from the store,
where each host's agent publishes its own; the first one used is pinned in ${PINS_FILE}
beside the fleet file (commit it), and one that differs from its pin later is refused.`;

const FLEET_HELP = `  --fleet FILE       the fleet file, or a flake's fleet output (.#nixship) (default:
                     $NIXSHIP_FLEET, else ./nixship.json, else .#nixship)
  --json             machine-readable output on stdout`;
const IDENTITY_HELP = `  --identity FILE    an admin's age identity (AGE-SECRET-KEY-1…) or unencrypted OpenSSH
                     ed25519 key, mode 0600 (default: $NIXSHIP_IDENTITY, else
                     ~/.config/nixship/identity.txt, else ~/.ssh/id_ed25519)`;

/**
 * The hosts' keys for a command that encrypts, and `pin`, which it calls once it wrote what it
 * encrypted (delivery/host-keys.ts).
 */
const keysToEncryptTo = (fleet: Fleet, fleetDir: string, replace: boolean) =>
  pinnedHostKeys(fleet, secretHosts(fleet), fleetDir, { replace });

/**
 * Says each host key pinned now on stderr, with its fingerprint: the key came from the store,
 * trusted on first sight, so the operator checks it out of band (on the host,
 * `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`). Returns them for --json.
 */
function sayPins(pins: readonly NewPin[], io: CliIO): { host: string; fingerprint: string }[] {
  for (const p of pins) {
    io.stderr.write(
      `${p.host}: ${p.replaced ? "pinned its new" : "pinned its"} host key ${p.fingerprint}, as it published it in the store, in ${PINS_FILE}: check it on the host (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)\n`,
    );
  }
  return pins.map(({ host, fingerprint }) => ({ host, fingerprint }));
}

const REPLACE_HELP = `  ${REPLACE_HOST_KEYS_FLAG}
                     take the keys ssm and agent hosts published to the store where they
                     differ from those pinned in ${PINS_FILE} (check them out of band first)`;

async function readIdentities(flag: string | undefined, io: CliIO): Promise<AgeIdentity[]> {
  const defaults = [
    join(homedir(), ".config", "nixship", "identity.txt"),
    join(homedir(), ".ssh", "id_ed25519"),
  ];
  // Set empty (`NIXSHIP_IDENTITY= nixship …`) is unset, as a shell user means it.
  const fromEnv = io.env.NIXSHIP_IDENTITY || undefined;
  const file = flag ?? fromEnv ?? defaults.find((f) => existsSync(f));
  if (file === undefined) {
    throw new UsageError(
      "no admin identity to decrypt secrets with",
      `pass --identity FILE or set $NIXSHIP_IDENTITY (an age identity or ssh ed25519 key of an admin the fleet lists), or put one in ${defaults.join(" or ")}`,
    );
  }
  const name =
    flag !== undefined
      ? "--identity"
      : fromEnv !== undefined
        ? "$NIXSHIP_IDENTITY"
        : "identity file";
  const text = await readSecretFile(file, "identity file", {
    name,
    make: `make one with 'age-keygen -o ${file}' and add the public key it prints (age1…) to the fleet file's secrets.admins, or name the ssh ed25519 key of an admin the fleet lists`,
  });
  return parseIdentities(text, file);
}

/** The plaintext from --from FILE or stdin, bounded; never from an argument. */
async function readPlaintext(from: string | undefined, io: CliIO): Promise<Uint8Array> {
  if (from !== undefined && from !== "-") return readBounded(from);
  if (from === undefined && (io.stdin as { isTTY?: boolean }).isTTY) {
    throw new UsageError(
      "secrets set: give the secret on stdin or with --from FILE",
      "e.g. nixship secrets set db-password --from ./password.txt",
    );
  }
  return readStreamBounded(io.stdin, MAX_PLAINTEXT, () => tooLarge("stdin"));
}

function tooLarge(where: string): OperationError {
  return new OperationError(
    "secret-too-large",
    `the secret on ${where} holds more than a secret may (${MAX_PLAINTEXT} bytes); nothing was written`,
  );
}

/**
 * The --from value as a message names it. `--from "$DB_PASSWORD"` gives the secret where its
 * file's path belongs: so the value is shown only when it names a file that is there, or is
 * written as a path (/…, ./…, ../…, ~/…), and looks like no secret; else only its length.
 */
async function shownSource(file: string): Promise<string> {
  const exists = await lstat(file).then(
    () => true,
    () => false,
  );
  const pathLike = /^(?:\/|\.\.?\/|~\/)\S*$/.test(file);
  return (exists || pathLike) && !mayBeSecret(file)
    ? file
    : `--from (${file.length} characters, not shown: they may be the secret itself)`;
}

const FROM_HINT =
  "--from names the file that holds the secret, never the secret itself: give the secret on stdin (… | nixship secrets set NAME) or in a file of mode 0600 (--from FILE)";

async function readBounded(file: string): Promise<Uint8Array> {
  const shown = await shownSource(file);
  // A file in the Nix store (a flake's ./token copied there) is readable by every user of the
  // machine: the value is out already, and encrypting it would hide that.
  const real = await realpath(file).catch(() => file);
  if (real.startsWith(`${STORE_DIR}/`)) {
    throw new InputError(
      "secret-source-in-store",
      `${shown} is in the Nix store, where every user of the machine may read it: the value is exposed already`,
      {
        hint: "make a new value (the one there is out), and give it on stdin or in a file of mode 0600 outside the flake",
      },
    );
  }
  const bytes = await readFileBounded(file, MAX_PLAINTEXT, () => tooLarge(shown)).catch(
    (err: NodeJS.ErrnoException) => {
      if (err instanceof OperationError) throw err;
      throw new InputError("secret-source-unreadable", `cannot read ${shown}: ${errnoWords(err)}`, {
        hint: FROM_HINT,
      });
    },
  );
  if (bytes === undefined) {
    throw new InputError("secret-source-unreadable", `cannot read ${shown}: no such file`, {
      hint: FROM_HINT,
    });
  }
  return bytes;
}

/**
 * Refuses a secret whose ciphertext file is the fleet file, the host-key pins file or another
 * secret's file, as they resolve (an absolute path, a link): setting it would overwrite that
 * file. The fleet file's own check (fleet/read-secrets.ts) sees only the names as written.
 */
async function refuseTakenSecretFiles({ fleet, fleetFile, fleetDir }: FleetInput): Promise<void> {
  const real = async (file: string) =>
    realpath(file).catch(async () =>
      join(await realpath(dirname(file)).catch(() => dirname(file)), basename(file)),
    );
  const taken = new Map<string, string>();
  const claim = async (file: string, what: string) => {
    const where = new Set([resolve(file), await real(file)]);
    for (const at of where) {
      const other = taken.get(at);
      if (other !== undefined) return other;
    }
    for (const at of where) taken.set(at, what);
    return undefined;
  };
  await claim(fleetFile, "the fleet file");
  await claim(pinsPath(fleetDir), `the host-key pins file (${PINS_FILE})`);
  for (const spec of fleet.secrets?.entries ?? []) {
    const other = await claim(spec.file, `the file of secret "${spec.name}"`);
    if (other === undefined) continue;
    throw new InputError(
      "secret-file-taken",
      `secret "${spec.name}": its file ${spec.file} is ${other}, which writing the secret would overwrite; nothing was written`,
      {
        hint: `give it a file of its own in the fleet file (secrets.entries.${spec.name}.file; by default secrets/${spec.name}.age)`,
      },
    );
  }
}

/** The fleet, as the secrets commands read it: no secret's file may be another's. */
async function readSecretsFleet(
  values: { fleet?: string | undefined },
  io: CliIO,
): Promise<FleetInput> {
  const input = await readFleetInput(values, io);
  await refuseTakenSecretFiles(input);
  return input;
}

export const secretsSet: Command = {
  path: ["secrets", "set"],
  summary: "encrypt a secret from stdin or a file to its hosts and the admins",
  help: `Usage: nixship secrets set NAME [--from FILE | -] [--allow-empty] [--replace-host-keys] [--fleet F] [--json]

Encrypts the secret NAME (an entry of the fleet's "secrets") to the SSH host keys of the
hosts it names and to the fleet's admins, and writes its file (safe to commit). The plaintext
comes from FILE or stdin, never from an argument, and is never written anywhere else.
${PINS_NOTE}

Options:
  --from FILE        read the plaintext from FILE ('-' or none: stdin)
  --allow-empty      store an empty secret (refused otherwise: an empty input is more often
                     a failed pipe or a wrong path than a wish)
${REPLACE_HELP}
${FLEET_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLAGS, ...REPLACE_FLAG, from: { type: "string" }, "allow-empty": { type: "boolean" } },
      "secrets set",
    );
    const [name, ...rest] = positionals;
    if (rest.length > 0 && !(rest.length === 1 && rest[0] === "-")) {
      throw new UsageError(
        "secrets set: takes NAME only; the secret comes from --from FILE or stdin, never from an argument (what was given is not shown)",
      );
    }
    if (name === undefined) throw new UsageError("secrets set: expects the secret's NAME");
    const { fleet, fleetDir } = await readSecretsFleet(values, io);
    const source = rest[0] === "-" ? "-" : values.from;
    const plaintext = await readPlaintext(source, io);
    if (plaintext.length === 0 && values["allow-empty"] !== true) {
      throw new InputError(
        "secret-empty",
        `secrets set ${name}: ${source === undefined || source === "-" ? "stdin" : await shownSource(source)} gave no bytes (a failed pipe or a wrong path gives that too); nothing was written`,
        {
          hint: "pass the secret on stdin or with --from FILE, or --allow-empty to store an empty secret on purpose",
        },
      );
    }
    const { keys, pin } = await keysToEncryptTo(
      fleet,
      fleetDir,
      values["replace-host-keys"] === true,
    );
    // An interrupt waits for the file to be written whole: never half a secret.
    const { outcome, pins } = await whileTrapped("secrets set", async () => {
      const set = await setSecret(fleet, name, plaintext, keys);
      return { outcome: set, pins: await pin() };
    });
    plaintext.fill(0);
    const pinned = sayPins(pins, io);
    if (values.json) writeJson(io, { name, ...outcome, pinned });
    else {
      io.stdout.write(
        `${name}: encrypted to ${outcome.recipients} recipients (hosts: ${outcome.hosts.join(", ") || "none"}) in ${outcome.file}\n`,
      );
    }
    return 0;
  },
};

export const secretsEdit: Command = {
  path: ["secrets", "edit"],
  summary: "edit a secret in $EDITOR, on a tmpfs scratch file removed after",
  help: `Usage: nixship secrets edit NAME [--identity FILE] [--replace-host-keys] [--fleet F] [--json]

Decrypts the secret NAME with an admin's identity (or starts empty) into a private scratch
file on a tmpfs ($XDG_RUNTIME_DIR or /dev/shm; mode 0600), opens it in $EDITOR (else vi), and
encrypts it back to its recipients when it changed. The scratch file is overwritten and
removed afterwards, also when the editor fails or the command is interrupted. Vim and neovim
(vi, as Debian installs it) are started without their viminfo or shada (whose registers would
keep the old value on disk), swap, undo and backup files; another editor's own history or
backups are its settings'.
${PINS_NOTE}

Options:
${IDENTITY_HELP}
${REPLACE_HELP}
${FLEET_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLAGS, ...IDENTITY_FLAG, ...REPLACE_FLAG },
      "secrets edit",
    );
    const [name, ...rest] = positionals;
    if (name === undefined || rest.length > 0) {
      throw new UsageError("secrets edit: expects exactly one NAME");
    }
    const { fleet, fleetDir } = await readSecretsFleet(values, io);
    const identities = await readIdentities(values.identity, io);
    const { keys, pin } = await keysToEncryptTo(
      fleet,
      fleetDir,
      values["replace-host-keys"] === true,
    );
    const trap = trapInterrupts({
      first: () => io.stderr.write("secrets edit: interrupted; removing the scratch file\n"),
      second: () => io.stderr.write("secrets edit: stopped\n"),
    });
    try {
      const editor = await editorCommand(io.env.EDITOR || io.env.VISUAL || "vi", io.env.PATH);
      const outcome = await editSecret(fleet, name, keys, identities, (path) =>
        runEditor(editor, path, trap.signal),
      );
      const pinned = sayPins(outcome.changed ? await pin() : [], io);
      if (values.json) writeJson(io, { name, ...outcome, pinned });
      else if (!outcome.changed) io.stdout.write(`${name}: unchanged\n`);
      else
        io.stdout.write(
          `${name}: encrypted to ${outcome.recipients} recipients in ${outcome.file}\n`,
        );
      return 0;
    } catch (err) {
      // Said as every interrupted command says it (with --json, as the error object).
      if (trap.signal.aborted) {
        throw new InterruptedError(
          "secrets edit: interrupted; the scratch file was removed and the secret left as it was",
          { cause: err },
        );
      }
      throw err;
    } finally {
      trap.release();
    }
  },
};

/** Runs the editor on `path` with the terminal; its failure leaves the secret as it was. */
function runEditor(editor: string, path: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // $EDITOR may carry arguments ("code --wait"): the shell splits it, the path stays one word.
    // exec: the editor is the process an interrupt stops, not a shell that leaves it running.
    const proc = spawn("sh", ["-c", `exec ${editor} "$1"`, "sh", path], {
      stdio: "inherit",
      signal,
    });
    proc.on("error", (err) => {
      if (signal.aborted) reject(new InterruptedError("secrets edit: interrupted"));
      else
        reject(
          new OperationError("editor-failed", `cannot run the editor '${editor}': ${err.message}`),
        );
    });
    proc.on("close", (code) => {
      if (signal.aborted) reject(new InterruptedError("secrets edit: interrupted"));
      else if (code === 0) resolve();
      else {
        reject(
          new OperationError(
            "editor-failed",
            `the editor '${editor}' exited with ${code}; the secret was left as it was`,
          ),
        );
      }
    });
  });
}

export const secretsRekey: Command = {
  path: ["secrets", "rekey"],
  summary: "re-encrypt secrets after hosts, tags, host keys or admins change",
  help: `Usage: nixship secrets rekey [NAME...] [--force] [--replace-host-keys] [--identity FILE]
                           [--fleet F] [--json]

Re-encrypts each secret (or those named) whose file is not encrypted to exactly the
recipients the fleet names now: its hosts' SSH host keys and the admins. Every secret is
decrypted and re-encrypted before any file is written, so a failure leaves all files as they
were.
${PINS_NOTE}

Options:
  --force            re-encrypt every secret, even those already right
${REPLACE_HELP}
${IDENTITY_HELP}
${FLEET_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(
      argv,
      { ...FLAGS, ...IDENTITY_FLAG, ...REPLACE_FLAG, force: { type: "boolean" } },
      "secrets rekey",
    );
    const { fleet, fleetDir } = await readSecretsFleet(values, io);
    const identities = await readIdentities(values.identity, io);
    const { keys, pin } = await keysToEncryptTo(
      fleet,
      fleetDir,
      values["replace-host-keys"] === true,
    );
    // An interrupt stops it before the first file is written; once writing, it waits for the
    // files to be written: all of them, or (on a failure) none.
    const rows = await whileTrapped("secrets rekey", async (signal) => {
      const done = await rekeySecrets(fleet, keys, identities, {
        signal,
        ...(positionals.length > 0 ? { names: positionals } : {}),
        force: values.force === true,
        ...(values.fleet === undefined ? {} : { fleetArg: values.fleet }),
      });
      return { done, pins: await pin() };
    });
    const pinned = sayPins(rows.pins, io);
    if (values.json) writeJson(io, { secrets: rows.done, pinned });
    else {
      for (const row of rows.done) {
        io.stdout.write(`${row.name}: ${row.outcome} (${row.recipients} recipients)\n`);
      }
    }
    return 0;
  },
};

export const secretsList: Command = {
  path: ["secrets", "list"],
  summary: "which host gets which secret, and whether each file has the right recipients",
  help: `Usage: nixship secrets list [--fleet F] [--json]

Lists the fleet's secrets: the hosts that get each, where and how they keep it, and whether
its file is encrypted to exactly the right recipients and names its secret (ok), to others
or without its name (stale: run 'nixship secrets rekey'), by another tool (unchecked: rekey to check),
as another secret (of-another: it holds that secret's value, which rekey and edit refuse to encrypt
under this name: restore it from version control, or set it anew), missing (run 'nixship
secrets set'), or damaged (not an age file: restore it from version control, or set it
anew). Decrypts nothing. Exits 1 when a secret is not ok, a host's key is unknown,
or a host published another key than the one pinned in ${PINS_FILE} (named, with both
fingerprints; its secrets are judged against the pinned key).

Options:
${FLEET_HELP}`,
  async run(argv, io) {
    const { values, positionals } = parseFlags(argv, FLAGS, "secrets list");
    refuseArguments(positionals, "secrets list");
    const { fleet, fleetDir } = await readSecretsFleet(values, io);
    const found = await collectHostKeys(fleet, secretHosts(fleet), {
      pins: await readPins(fleetDir),
      fleetDir,
    });
    const rows = await listSecrets(fleet, found.keys);
    const changed = found.conflicts.map((c) => ({
      host: c.host,
      pinned: c.oldFingerprint,
      published: c.newFingerprint,
    }));
    if (values.json) writeJson(io, { secrets: rows, hostKeysChanged: changed });
    else {
      io.stdout.write(formatSecretsList(rows, values.fleet));
      for (const c of changed) {
        io.stdout.write(
          `${c.host}: its published host key ${c.published} is not the ${c.pinned} pinned in ${PINS_FILE}: check it out of band, then '${secretsCommand(`rekey ${REPLACE_HOST_KEYS_FLAG}`, values.fleet)}'\n`,
        );
      }
    }
    const ok = rows.every((r) => r.state === "ok" && r.hostsWithoutKey.length === 0);
    return ok && changed.length === 0 ? 0 : 1;
  },
};
