# A stand-in for nixpkgs' `lib.nixosSystem { modules = [ ... ]; }` on a machine without nixpkgs,
# for the fleet-in-a-flake tests. It calls each module (following `imports`; the real
# packaging/nixos/nixship-deployment.nix among them) with a stand-in `lib` whose mkOption records
# the option, and gives the two attributes nixship reads of a configuration, as nixosSystem does:
# `config.nixship.deployment` (each declared option's default, overlaid with what the modules
# set; absent when no module declares it) and `config.system.build.toplevel` (given here: one of
# the example systems, plain derivations). Unlike the real module system it checks no types,
# merges no lists (a later module's value replaces an earlier one's), knows no mkIf, mkDefault or
# priorities, and evaluates nothing else; like it, setting an option that no module declares
# fails with "The option ... does not exist".
{ modules, toplevel }:
let
  type = name: { inherit name; };
  lib = {
    mkOption = attrs: attrs // { _type = "option"; };
    types = {
      str = type "str";
      bool = type "bool";
      attrs = type "attrs";
      listOf = _: type "listOf";
      nullOr = _: type "nullOr";
      enum = _: type "enum";
    };
  };
  args = {
    inherit config lib;
    pkgs = { };
  };
  load = m: if builtins.isPath m || builtins.isString m then load (import m) else if builtins.isFunction m then m args else m;
  # Each module and the ones it imports, depth first.
  flatten = ms: builtins.concatMap (m: let loaded = load m; in [ loaded ] ++ flatten (loaded.imports or [ ])) ms;
  all = flatten modules;
  # nixpkgs' unifyModuleSyntax: without options or config, a module's attributes are its config.
  configOf =
    m:
    if m ? config || m ? options then
      m.config or { }
    else
      removeAttrs m [ "_file" "key" "imports" "disabledModules" ];
  declared = builtins.foldl' (acc: m: acc // (m.options.nixship.deployment or { })) { } all;
  defaults = builtins.mapAttrs (_: option: option.default or null) declared;
  set = builtins.foldl' (acc: m: acc // ((configOf m).nixship.deployment or { })) { } all;
  unknown = builtins.filter (name: !(declared ? ${name})) (builtins.attrNames set);
  deployment =
    if unknown != [ ] then
      throw "The option `nixship.deployment.${builtins.head unknown}' does not exist."
    else
      defaults // set;
  config = {
    system.build.toplevel = toplevel;
  }
  // (if declared == { } then { } else { nixship.deployment = deployment; });
in
{
  inherit config;
  # What a configuration is for nixship's fleet: nixosSystem's result has these, and more.
  _type = "configuration";
}
