// The nix.conf settings nixship's builds need of the local Nix, and the fix for a build that
// failed for want of one: `doctor` and a failed build name the same line to add.

/** Where a setting of the local Nix goes. */
export const NIX_CONF = "/etc/nix/nix.conf (or $NIX_CONFIG)";

export const FEATURES_FIX = `add to ${NIX_CONF}: experimental-features = nix-command flakes`;

export const SANDBOX_FIX = `add to ${NIX_CONF}: sandbox = false (the sandbox has no /bin/sh for systems built without nixpkgs)`;

export function buildUsersFix(group: string): string {
  return `add to ${NIX_CONF}: build-users-group = (empty: build as the calling user), or create the '${group}' group and its build users`;
}

/** Nix's words for a builder the sandbox lacks (`/bin/sh` of the example systems). */
export const SANDBOX_FAILURE = /executing '\/bin\/sh': No such file/;

/**
 * The fix for a Nix command that failed because of a setting of its Nix, from its stderr;
 * undefined when nothing it said points at one. `store`: the other machine the command built
 * on, whose nix.conf it is then.
 */
export function nixSettingFix(stderr: string, store?: string): string | undefined {
  const fix = settingFix(stderr);
  return fix === undefined || store === undefined ? fix : `on ${store}, ${fix}`;
}

function settingFix(stderr: string): string | undefined {
  if (SANDBOX_FAILURE.test(stderr)) return SANDBOX_FIX;
  const group = /group '([^']*)' specified in 'build-users-group'/.exec(stderr)?.[1];
  if (group !== undefined) return buildUsersFix(group);
  if (/build-users-group/.test(stderr)) return buildUsersFix("nixbld");
  if (/experimental Nix feature '(nix-command|flakes)' is disabled/.test(stderr)) {
    return FEATURES_FIX;
  }
  return undefined;
}
