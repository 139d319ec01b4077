// `rollback --to`: what a host is sent back to. A generation (ssh, ssm and agent hosts), or, for
// agent hosts, a store path or the system a given release named for the host.
import { UsageError } from "../errors.js";
import { parseStorePath, type StorePath } from "../nix/store-path.js";

export type RollbackTarget =
  /** `N` or `generation:N`: the system profile's generation N. */
  | { readonly kind: "generation"; readonly generation: number }
  /** `/nix/store/…`: that system (agent hosts). */
  | { readonly kind: "path"; readonly path: StorePath }
  /** `release:N`: the system release N of the channel named for the host (agent hosts). */
  | { readonly kind: "release"; readonly seq: number };

const NUMBER = /^[1-9][0-9]{0,14}$/;

export const ROLLBACK_TO_FORMS = "GENERATION, generation:N, release:N or /nix/store/PATH";

export function parseRollbackTarget(text: string): RollbackTarget {
  const [prefix, rest] = text.includes(":") ? text.split(/:(.*)/s) : [undefined, text];
  if (prefix === undefined && NUMBER.test(text)) {
    return { kind: "generation", generation: Number(text) };
  }
  if (prefix === "generation" && rest !== undefined && NUMBER.test(rest)) {
    return { kind: "generation", generation: Number(rest) };
  }
  if (prefix === "release" && rest !== undefined && NUMBER.test(rest)) {
    return { kind: "release", seq: Number(rest) };
  }
  if (text.startsWith("/nix/store/")) {
    try {
      return { kind: "path", path: parseStorePath(text).path };
    } catch (err) {
      throw new UsageError(`rollback: --to ${text} is not a store path: ${(err as Error).message}`);
    }
  }
  throw new UsageError(
    `rollback: --to expects ${ROLLBACK_TO_FORMS}, got '${text}'`,
    "see 'nixship rollback --help'",
  );
}

export function formatRollbackTarget(to: RollbackTarget): string {
  switch (to.kind) {
    case "generation":
      return `generation:${to.generation}`;
    case "release":
      return `release:${to.seq}`;
    case "path":
      return to.path;
  }
}

/** The generation for modes whose hosts go back by generation only (ssh, ssm). */
export function generationOnly(to: RollbackTarget | undefined, mode: string): number | undefined {
  if (to === undefined) return undefined;
  if (to.kind === "generation") return to.generation;
  throw new UsageError(
    `rollback --to ${formatRollbackTarget(to)} applies to agent hosts; ${mode} hosts go back to a generation`,
    "give --to a generation number (--to 12 or --to generation:12)",
  );
}
