// Which key exchange a login that carries no secret offers first: a settling login (confirm or
// abort after a switch, over a new connection: a one-time token and the script's answer), and a
// survey's status past the bound on held connections (the paths asked and the host's status;
// ssh.ts). Neither carries a secret, and neither becomes a shared connection.
// A post-quantum hybrid key exchange protects a session's confidentiality against a recording
// decrypted later; host and user authentication stay classical either way. So such a login
// gains nothing from it, while OpenSSH 9.0-9.8's default, sntrup761x25519, costs the deployer
// ~90 ms of CPU per login here (curve25519 ~14 ms; OpenSSH 9.9+'s mlkem768x25519 ~14 ms too).
//
// Only when the host's effective KexAlgorithms is ssh's own default, and that default starts
// with sntrup761x25519, a settling login offers the same algorithms with curve25519-sha256
// first: nothing is added or removed, so it negotiates wherever the default would. A list set
// in any ssh_config that differs from the default is the operator's choice and is kept as it
// is, for every login (to keep the post-quantum exchange for settling logins too, name one,
// e.g. `KexAlgorithms sntrup761x25519-sha512@openssh.com,curve25519-sha256`).
import { resolvedSettings } from "./ssh-host-key.js";
import type { SshTarget } from "./ssh-transport.js";

/** The classical key exchange a settling login prefers. */
export const SETTLING_KEX = "curve25519-sha256";
/** The post-quantum exchange whose cost the preference avoids (OpenSSH 9.0-9.8's default). */
const COSTLY_KEX_PREFIX = "sntrup761x25519";

/**
 * The KexAlgorithms value a settling login uses, from the target's effective list (`ssh -G`)
 * and ssh's compiled default; undefined to leave ssh's settings alone.
 */
export function settlingKexAlgorithms(
  effective: string | undefined,
  sshDefault: string | undefined,
): string | undefined {
  if (effective === undefined || effective !== sshDefault) return undefined;
  const list = effective.split(",");
  if (!list[0]?.startsWith(COSTLY_KEX_PREFIX) || !list.includes(SETTLING_KEX)) return undefined;
  return [SETTLING_KEX, ...list.filter((k) => k !== SETTLING_KEX)].join(",");
}

let sshDefault: Promise<string | undefined> | undefined;

/**
 * ssh's compiled-in KexAlgorithms (`ssh -F /dev/null -G`: no ssh_config read), asked once per
 * process; undefined when ssh does not say.
 */
export function sshDefaultKexAlgorithms(): Promise<string | undefined> {
  sshDefault ??= resolvedSettings(
    ["-F", "/dev/null"],
    "nixship-default.invalid",
    "read ssh's default key exchange algorithms",
  ).then(
    (settings) => settings.get("kexalgorithms"),
    () => undefined,
  );
  return sshDefault;
}

/** The target with the key exchange its settling logins use (see above), when it has one. */
export async function settlingTarget(
  target: SshTarget,
  settings: ReadonlyMap<string, string>,
): Promise<SshTarget> {
  const kex = settlingKexAlgorithms(settings.get("kexalgorithms"), await sshDefaultKexAlgorithms());
  return kex === undefined ? target : { ...target, settlingKex: kex };
}
