# A stand-in for nixpkgs on a machine without it, for the tests of `init --from`: what a colmena
# hive or a deploy-rs flake takes of nixpkgs. `import ./.` is nixpkgs' function (`import
# <nixpkgs>`); called, an initialised package set with `path` (whose nixos/lib/eval-config.nix
# evaluates NixOS modules: see there), `lib` (with `nixosSystem`, as the nixpkgs flake's lib has)
# and `system`. It has no packages: a module that uses one (`with pkgs; [ vim ]`) is fine as long
# as nothing looks at it, and nothing here does.
{
  system ? builtins.currentSystem,
  overlays ? [ ],
  config ? { },
}:
{
  inherit system overlays config;
  path = ./.;
  lib = import ./lib.nix;
  stdenv.hostPlatform.system = system;
}
