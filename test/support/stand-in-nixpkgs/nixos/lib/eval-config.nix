# The stand-in for nixpkgs' nixos/lib/eval-config.nix: evaluates NixOS modules far more simply
# than the module system. Each module (a path, a function of { config, lib, pkgs, ... } and the
# specialArgs, or an attribute set; `imports` followed) gives options and config; config is
# merged (attribute sets recursively, lists concatenated, a later value replacing an earlier
# one), each declared option takes its default when unset and its `apply`, and an `attrsOf
# (submodule m)` option evaluates each entry with m (`name` its attribute). Nothing is
# type-checked and undeclared config is kept as given. `config.system.build.toplevel` is an
# example system of nixship's examples/ named by `networking.hostName` (NixOS's default:
# "nixos"), so that each node's system is its own.
{
  system ? builtins.currentSystem,
  modules,
  specialArgs ? { },
  ...
}:
let
  lib = import ../../lib.nix;
  pkgs = import ../.. { inherit system; };
  isOption = v: builtins.isAttrs v && (v._type or null) == "option";
  args = { inherit config lib pkgs; options = declared; } // specialArgs;
  load = m: if builtins.isPath m || builtins.isString m then load (import m) else if builtins.isFunction m then m args else m;
  flatten = ms: builtins.concatMap (m: let loaded = load m; in [ loaded ] ++ flatten (loaded.imports or [ ])) ms;
  all = flatten modules;
  configOf = m:
    if m ? config || m ? options then m.config or { }
    else removeAttrs m [ "_file" "key" "imports" "disabledModules" ];
  merge = a: b:
    if builtins.isAttrs a && builtins.isAttrs b && !(isOption a) && (a.type or null) != "derivation" then
      a // builtins.mapAttrs (n: v: if a ? ${n} then merge a.${n} v else v) b
    else if builtins.isList a && builtins.isList b then a ++ b
    else b;
  declared = builtins.foldl' (acc: m: merge acc (m.options or { })) { } all;
  set = builtins.foldl' (acc: m: merge acc (removeAttrs (configOf m) [ "_module" ])) { } all;
  # `present`: whether the config sets it (to null, maybe: that is not the default).
  resolve = opts: cfg: present:
    if isOption opts then
      let
        value = if present then cfg else opts.default or null;
        sub = opts.type.elem or { };
        typed =
          if (opts.type.name or "") == "attrsOf" && (sub.name or "") == "submodule" && value != null
          then builtins.mapAttrs (name: v: submodule sub.module name v) value
          else value;
      in (opts.apply or (x: x)) typed
    else if builtins.isAttrs opts then
      let c = if present && builtins.isAttrs cfg then cfg else { }; in
      c // builtins.mapAttrs (n: o: resolve o (c.${n} or null) (c ? ${n})) opts
    else cfg;
  submodule = module: name: value:
    let
      m = module { inherit name lib; config = result; };
      result = resolve (m.options or { }) value true;
    in result;
  resolved = resolve declared set true;
  hostName = resolved.networking.hostName or "nixos";
  toplevel = import ../../../../../examples/system.nix { inherit system; name = hostName; version = hostName; };
  config = merge resolved { system.build.toplevel = toplevel; };
in
{
  inherit config;
  options = declared;
  _type = "configuration";
}
