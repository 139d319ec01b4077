# The installed activation script of a pinned host, as text: nixosModules.host
# (nixship-host.nix) and the lab's stand-in systems (examples/system.nix, which tests build
# with it) make their store paths from these, so that both install the same thing. No nixpkgs:
# plain string functions.
#
# A host runs `sudo -n /run/current-system/sw/bin/nixship-activate COMMAND ...`. The wrapper
# starts activate.sh with an empty environment but for PATH, HOME and NIXSHIP_TRUST_FILE, the
# trust file's store path: sudo resets the environment too, but the wrapper does not rely on
# it. activate.sh then trusts only that file's substituters and keys (see "pinned trust" in
# its contract, src/host/activate/00-header.sh).
let
  # A key as Nix writes it: NAME:BASE64 of 32 bytes.
  keyPattern = "[^:[:space:]]+:[A-Za-z0-9+/]{43}=";
  # A substituter URL: a scheme, then no whitespace.
  urlPattern = "[a-z][a-z0-9+.-]*://[^[:space:]]+";
  check =
    what: pattern: value:
    if builtins.match pattern value != null then
      value
    else
      throw "nixship-activate: ${what} '${value}' is not one (expected ${pattern})";
in
{
  inherit keyPattern urlPattern;

  # The trust file: one "substituter URL" or "trusted-key NAME:KEY" per line, at least one key.
  trustText =
    { substituters, trustedKeys }:
    if trustedKeys == [ ] then
      throw "nixship-activate: the host's trust needs at least one trusted key"
    else
      builtins.concatStringsSep "" (
        map (url: "substituter ${check "substituter" urlPattern url}\n") substituters
        ++ map (key: "trusted-key ${check "trusted key" keyPattern key}\n") trustedKeys
      );

  # The wrapper `bin/nixship-activate`: `shell` runs `script` (activate.sh's store path) with
  # the trust file `trustFile`, `env` is an `env` executable, and `path` the PATH activate.sh
  # finds Nix, coreutils and awk on (it appends the running system's sw/bin itself).
  wrapperText =
    {
      shell,
      env,
      script,
      trustFile,
      path,
    }:
    ''
      #!${shell}
      # nixship-activate: nixship's activate.sh with this host's pinned trust (${trustFile}).
      # Run by the deploy user as `sudo -n /run/current-system/sw/bin/nixship-activate ...`.
      exec ${env} -i PATH=${path} HOME=/root NIXSHIP_TRUST_FILE=${trustFile} ${shell} ${script} "$@"
    '';
}
