// The current Nix (Debian trixie's, made by scripts/current-nix.sh) as a second peer of the push
// benchmark: it gets a /nix of its own holding the synthetic closure (copied there by the
// machine's Nix), since a newer Nix would migrate the machine's own store database.
import { spawn } from "node:child_process";
import { access, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { CURRENT_NIX_BIN, withCurrentNix } from "../support/current-nix.js";

export interface CurrentNixStore {
  /** The directory bound over /nix when the current Nix runs. */
  readonly nixRoot: string;
  /** What its `nix --version` printed. */
  readonly version: string;
  /** [file, args] running `nix ARGS` with the current Nix over that store. */
  readonly nix: (args: readonly string[]) => [string, string[]];
}

/**
 * Copies the closure of `top` into a store of its own under `work` and reads every file of it
 * once, so that its runs read from the page cache as the machine's Nix does.
 */
export async function prepareCurrentNixStore(
  top: string,
  work: string,
  env: NodeJS.ProcessEnv,
): Promise<CurrentNixStore> {
  await access(join(CURRENT_NIX_BIN, "nix")).catch(() => {
    throw new Error(
      `no current Nix in ${CURRENT_NIX_BIN}: make it first with 'bash scripts/current-nix.sh' (as root)`,
    );
  });
  const root = join(work, "current-nix");
  await mkdir(root, { recursive: true });
  await exec("nix", ["copy", "--no-check-sigs", "--to", root, top], env);
  const nixRoot = join(root, "nix");
  const nix = (args: readonly string[]) => withCurrentNix(nixRoot, "nix", args);
  // The machine's Nix wrote the database; the current one takes it over (and migrates it) here.
  const [file, args] = nix(["path-info", top]);
  await exec(file, args, env);
  await exec("sh", ["-c", 'find "$1" -type f -exec cat {} + > /dev/null', "sh", nixRoot], env);
  const [vFile, vArgs] = nix(["--version"]);
  const version = (await exec(vFile, vArgs, env)).trim();
  return { nixRoot, version, nix };
}

function exec(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    proc.stdout.on("data", (d: Buffer) => out.push(d));
    proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      err = (err + d).slice(-4000);
    });
    proc.on("error", reject);
    proc.on("close", (code) =>
      code === 0
        ? resolve(Buffer.concat(out).toString("utf8"))
        : reject(new Error(`${command} ${args.join(" ")} exited ${code}:\n${err}`)),
    );
  });
}
