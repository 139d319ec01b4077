// What to do about a flake that Nix would not evaluate, where Nix's own words do not say it:
// the hint beside an evaluation error, chosen by what Nix said. Pure.

/**
 * The hint for Nix's error `said`, evaluating a flake: the fix where nixship knows it (a lock
 * file to write), else `otherwise`.
 */
export function flakeErrorHint(said: string, otherwise: string): string {
  // builtins.getFlake never writes a lock file, so a flake whose inputs have none, or one out of
  // date with its inputs, fails so (Nix 2.8 to 2.26).
  if (/requires lock file changes/.test(said)) {
    return "the flake's flake.lock is missing or out of date with its inputs: run 'nix flake lock' in its directory (and commit flake.lock); nixship never writes it";
  }
  return otherwise;
}
