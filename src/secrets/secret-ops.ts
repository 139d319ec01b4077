// What `nixship secrets` does with a fleet's secrets: encrypt a new plaintext, edit one,
// re-encrypt after hosts or admins change, and say which files are encrypted to exactly the
// right recipients. Plaintexts live in memory (and, for edit, a tmpfs scratch file) only.

import {
  type AgeIdentity,
  decryptSecret,
  encryptSecret,
  readAgeHeader,
  recipientsDigest,
} from "../age/age.js";
import { InputError, InterruptedError, OperationError } from "../errors.js";
import type { Fleet, SecretSpec } from "../fleet/fleet.js";
import { readFileBounded } from "../util/bounded-file.js";
import {
  findSecret,
  hostsWithoutKeyError,
  type SecretRecipients,
  secretRecipients,
} from "./recipients.js";
import { createScratchFile } from "./scratch-file.js";
import {
  MAX_PLAINTEXT,
  readCiphertext,
  requireOwnFile,
  writeCiphertext,
  writeCiphertexts,
} from "./secret-file.js";
import { secretsCommand } from "./secrets-command.js";

type SecretsFleet = Pick<Fleet, "hosts" | "secrets">;

/**
 * ok: encrypted to exactly the recipients the fleet names; stale: to others (rekey);
 * unchecked: written by another tool, so its recipients cannot be told (rekey to check);
 * missing: no file yet (set).
 */
/** of-another: encrypted as another secret (its value), restored or set anew, never rekeyed. */
export type SecretFileState = "ok" | "stale" | "unchecked" | "of-another" | "missing" | "damaged";

export interface SecretRow {
  readonly name: string;
  readonly hosts: readonly string[];
  readonly hostsWithoutKey: readonly string[];
  readonly file: string;
  readonly path: string;
  readonly owner: string;
  readonly group: string;
  readonly mode: string;
  readonly state: SecretFileState;
}

export async function listSecrets(
  fleet: SecretsFleet,
  hostKeys: ReadonlyMap<string, string>,
): Promise<SecretRow[]> {
  const rows: SecretRow[] = [];
  for (const spec of fleet.secrets?.entries ?? []) {
    const r = secretRecipients(fleet, spec, hostKeys);
    const bytes = await readCiphertext(spec.file);
    rows.push({
      name: spec.name,
      hosts: r.hosts,
      hostsWithoutKey: r.hostsWithoutKey,
      file: spec.file,
      path: spec.path,
      owner: spec.owner,
      group: spec.group,
      mode: spec.mode,
      state: bytes === undefined ? "missing" : await listedState(bytes, spec, r),
    });
  }
  return rows;
}

/** fileState for the list: a file that is not an age file is a row of its own (damaged). */
async function listedState(
  bytes: Uint8Array,
  spec: SecretSpec,
  r: SecretRecipients,
): Promise<SecretFileState> {
  return fileState(bytes, spec, r).catch((err: unknown) => {
    if (err instanceof InputError && err.code === "not-age") return "damaged";
    throw err;
  });
}

async function fileState(
  bytes: Uint8Array,
  spec: SecretSpec,
  r: SecretRecipients,
): Promise<SecretFileState> {
  const header = await readAgeHeader(bytes, spec.file);
  if (header.secretName !== undefined && header.secretName !== spec.name) return "of-another";
  const written = header.recipientsDigest;
  if (written === undefined) return "unchecked";
  // A file that names no secret (written before names were bound) is one a pinned host
  // refuses: rekey writes it anew.
  return written === recipientsDigest(r.recipients) &&
    r.hostsWithoutKey.length === 0 &&
    header.secretName === spec.name
    ? "ok"
    : "stale";
}

/** Refuses `spec`'s file when it was encrypted as another secret (requireOwnFile). */
async function requireOwnSecret(
  spec: SecretSpec,
  bytes: Uint8Array,
  fleetArg?: string,
): Promise<void> {
  const header = await readAgeHeader(bytes, spec.file);
  requireOwnFile(
    spec.name,
    spec.file,
    header.secretName,
    secretsCommand(`set ${spec.name}`, fleetArg),
  );
}

/** The recipients of `spec`, refusing a secret that some of its hosts could not read. */
function requireRecipients(
  fleet: SecretsFleet,
  spec: SecretSpec,
  hostKeys: ReadonlyMap<string, string>,
): SecretRecipients {
  const r = secretRecipients(fleet, spec, hostKeys);
  if (r.hostsWithoutKey.length > 0) throw hostsWithoutKeyError(spec.name, r.hostsWithoutKey);
  return r;
}

function requireSize(name: string, plaintext: Uint8Array): void {
  if (plaintext.length > MAX_PLAINTEXT) {
    throw new OperationError(
      "secret-too-large",
      `secret "${name}" would hold ${plaintext.length} bytes, more than a secret may (${MAX_PLAINTEXT})`,
      { hint: "secrets are keys, passwords and certificates; keep data elsewhere" },
    );
  }
}

export interface SetOutcome {
  readonly file: string;
  readonly hosts: readonly string[];
  readonly recipients: number;
}

/** Encrypts `plaintext` as the secret `name` to its recipients and writes its file. */
export async function setSecret(
  fleet: SecretsFleet,
  name: string,
  plaintext: Uint8Array,
  hostKeys: ReadonlyMap<string, string>,
): Promise<SetOutcome> {
  const spec = findSecret(fleet, name);
  const r = requireRecipients(fleet, spec, hostKeys);
  requireSize(name, plaintext);
  await writeCiphertext(spec.file, await encryptSecret(plaintext, r.recipients, { secret: name }));
  return { file: spec.file, hosts: r.hosts, recipients: r.recipients.length };
}

async function openSecret(
  spec: SecretSpec,
  bytes: Uint8Array,
  identities: readonly AgeIdentity[],
): Promise<Uint8Array> {
  return decryptSecret(bytes, identities, `secret "${spec.name}" (${spec.file})`);
}

export type EditOutcome = SetOutcome & { readonly changed: boolean };

/**
 * Decrypts the secret (or starts empty) into a tmpfs scratch file, lets `edit` change it, and
 * writes it back encrypted when it changed (or its recipients did). The scratch file is gone
 * afterwards, whatever happens.
 */
export async function editSecret(
  fleet: SecretsFleet,
  name: string,
  hostKeys: ReadonlyMap<string, string>,
  identities: readonly AgeIdentity[],
  edit: (path: string) => Promise<void>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EditOutcome> {
  const spec = findSecret(fleet, name);
  const r = requireRecipients(fleet, spec, hostKeys);
  const bytes = await readCiphertext(spec.file);
  if (bytes !== undefined) await requireOwnSecret(spec, bytes);
  const before = bytes === undefined ? new Uint8Array() : await openSecret(spec, bytes, identities);
  const scratch = await createScratchFile(name, before, env);
  let after: Uint8Array;
  try {
    await edit(scratch.path);
    after = await readScratch(scratch.path, name);
  } finally {
    await scratch.remove();
  }
  if (bytes === undefined && after.length === 0) {
    throw new InputError(
      "secret-empty",
      `secrets edit ${name}: the secret has no file yet, and the editor left it empty (quit without saving?); nothing was written`,
      {
        hint: `an empty secret is set on purpose with 'nixship secrets set ${name} --allow-empty < /dev/null'`,
      },
    );
  }
  const same =
    bytes !== undefined &&
    Buffer.from(before).equals(after) &&
    (await fileState(bytes, spec, r)) === "ok";
  before.fill(0);
  if (!same) {
    requireSize(name, after);
    await writeCiphertext(
      spec.file,
      await encryptSecret(after, r.recipients, { secret: spec.name }),
    );
  }
  after.fill(0);
  return { file: spec.file, hosts: r.hosts, recipients: r.recipients.length, changed: !same };
}

async function readScratch(path: string, name: string): Promise<Uint8Array> {
  const tooLarge = (size: number) =>
    new OperationError(
      "secret-too-large",
      `secret "${name}" would hold ${size} bytes, more than a secret may (${MAX_PLAINTEXT}); nothing was written`,
    );
  const bytes = await readFileBounded(path, MAX_PLAINTEXT, tooLarge).catch((err: unknown) => {
    if (err instanceof OperationError) throw err;
    return undefined;
  });
  if (bytes === undefined) {
    throw new OperationError("secret-edit-lost", `the edited file of secret "${name}" is gone`, {
      hint: "save it under the same name in the editor",
    });
  }
  return bytes;
}

export type RekeyOutcome = "rekeyed" | "unchanged";

export interface RekeyRow {
  readonly name: string;
  readonly outcome: RekeyOutcome;
  readonly hosts: readonly string[];
  readonly recipients: number;
}

/**
 * Re-encrypts every secret (or those named) whose file is not encrypted to exactly its
 * recipients (`force`: every one). All are decrypted and re-encrypted before any is written,
 * so a secret that cannot be opened, or a host without a key, leaves every file as it was.
 */
export async function rekeySecrets(
  fleet: SecretsFleet,
  hostKeys: ReadonlyMap<string, string>,
  identities: readonly AgeIdentity[],
  options: {
    readonly names?: readonly string[];
    readonly force?: boolean;
    /** The fleet as --fleet named it, for the commands its errors print. */
    readonly fleetArg?: string;
    /** An interrupt: heard until the first file is written, then the rekey finishes. */
    readonly signal?: AbortSignal;
  } = {},
): Promise<RekeyRow[]> {
  const specs =
    options.names === undefined
      ? (fleet.secrets?.entries ?? [])
      : options.names.map((n) => findSecret(fleet, n));
  const planned: { spec: SecretSpec; r: SecretRecipients; next: Uint8Array | undefined }[] = [];
  const stopIfAsked = () => {
    if (options.signal?.aborted) {
      throw new InterruptedError(
        `stopped before any secret's file was written: every one is as it was`,
      );
    }
  };
  for (const spec of specs) {
    stopIfAsked();
    const r = requireRecipients(fleet, spec, hostKeys);
    const bytes = await readCiphertext(spec.file);
    if (bytes === undefined) {
      throw new OperationError(
        "secret-file-missing",
        `secret "${spec.name}" has no file ${spec.file}`,
        {
          hint: `create it with: ${secretsCommand(`set ${spec.name}`, options.fleetArg)}`,
        },
      );
    }
    // Another secret's value is never encrypted again under this name, --force or not.
    await requireOwnSecret(spec, bytes, options.fleetArg);
    if (!options.force && (await fileState(bytes, spec, r)) === "ok") {
      planned.push({ spec, r, next: undefined });
      continue;
    }
    const plaintext = await openSecret(spec, bytes, identities);
    planned.push({
      spec,
      r,
      next: await encryptSecret(plaintext, r.recipients, { secret: spec.name }),
    });
    plaintext.fill(0);
  }
  stopIfAsked();
  // All or none: a file that cannot be written leaves every secret as it was.
  await writeCiphertexts(
    planned.flatMap(({ spec, next }) =>
      next === undefined ? [] : [{ file: spec.file, ciphertext: next }],
    ),
  );
  return planned.map(({ spec, r, next }) => ({
    name: spec.name,
    outcome: next === undefined ? "unchanged" : "rekeyed",
    hosts: r.hosts,
    recipients: r.recipients.length,
  }));
}
