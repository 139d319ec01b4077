// ssh options handed to Nix (`nix copy --to ssh://`) as one ssh_config file of nixship's own,
// named by NIX_SSHOPTS as `-F FILE`. Nix splits NIX_SSHOPTS at whitespace and knows no quoting
// (2.8), so a fleet's path with a space would become two words, and a word that looks like an
// option (`-oProxyCommand=…`) an option: no value from the fleet file goes there, only the
// path of this file, in the deploying user's private runtime directory.
import { createHash } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { InputError } from "../errors.js";
import { writeFileAtomically } from "../util/atomic-file.js";
import { privateRuntimeDir } from "../util/runtime-dir.js";

/**
 * An ssh_config with what `args` (ssh's own options: `-F FILE`, `-o KEY=VALUE` with VALUE as
 * ssh_config takes it (see `sshConfigValue`), `-l USER`) say: the `-o` options first (ssh
 * keeps the first value it reads, as `-o` wins over a config file), then the `-F` file
 * included, or without one the files ssh reads by default.
 */
export function sshConfigText(args: readonly string[]): string {
  const lines = ["# nixship: the ssh options of one nix copy (written per run, private)"];
  let include: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = args[i + 1] ?? "";
    if (flag === "-F") include = value;
    else if (flag === "-o") {
      const eq = value.indexOf("=");
      lines.push(`${value.slice(0, eq)} ${value.slice(eq + 1)}`);
    } else if (flag === "-l") lines.push(`User ${sshConfigValue(value)}`);
    else throw new Error(`sshConfigText: unexpected ssh argument '${flag}'`);
    i++;
  }
  if (include !== undefined) lines.push(`Include ${sshConfigValue(include)}`);
  else lines.push("Include ~/.ssh/config", "Include /etc/ssh/ssh_config");
  return `${lines.join("\n")}\n`;
}

/**
 * A value as ssh_config (and ssh's `-o`, which parses the same way) takes it: in double
 * quotes, so that spaces stay inside one value (UserKnownHostsFile takes several files
 * separated by spaces). A value ssh cannot quote is refused.
 */
export function sshConfigValue(value: string): string {
  if (/["\n\r\0]/.test(value)) {
    throw new InputError(
      "bad-ssh-option",
      `an ssh option value holds a double quote or a line break, which ssh_config cannot quote: ${JSON.stringify(value.slice(0, 120))}`,
      { hint: "rename the file (ssh.knownHosts, ssh.configFile) or user in the fleet file" },
    );
  }
  return `"${value}"`;
}

/**
 * Writes the options to a file of their own (mode 0600) in the private runtime directory and
 * returns the NIX_SSHOPTS that names it.
 */
export async function nixSshOpts(args: readonly string[]): Promise<string> {
  const text = sshConfigText(args);
  const dir = join(privateRuntimeDir(), "ssh");
  if (/\s/.test(dir)) {
    throw new InputError(
      "bad-runtime-dir",
      `nixship's runtime directory ${dir} holds whitespace, which NIX_SSHOPTS cannot carry`,
      { hint: "set TMPDIR (or XDG_RUNTIME_DIR) to a path without spaces" },
    );
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(
    dir,
    `nix-${createHash("sha256").update(text).digest("hex").slice(0, 16)}.config`,
  );
  await writeFileAtomically(file, text, 0o600);
  return `-F ${file}`;
}
