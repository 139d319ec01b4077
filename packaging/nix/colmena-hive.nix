# nixship's reading of a colmena hive (a hive.nix, or a flake's `colmena` output), so that a fleet
# can keep its hive when it leaves colmena: `lib.readColmenaHive hive` evaluates each node as
# colmena's manual says a hive is evaluated (by `meta.nixpkgs`, or the node's
# `meta.nodeNixpkgs`; with `defaults`; `name`, `nodes`, `meta.specialArgs` and
# `meta.nodeSpecialArgs` among the modules' arguments), with colmena's `deployment` options
# declared (names and defaults as its manual lists them) so that configurations setting them
# still evaluate. `nodes.NAME` is each node's configuration, `deployment.NAME` its
# `config.deployment`, `meta` the hive's meta as written.
rawHive:
let
  hive =
    if builtins.isFunction rawHive || rawHive ? __functor then
      rawHive { }
    else if builtins.isAttrs rawHive then
      rawHive
    else
      throw "a colmena hive is an attribute set (or a function returning one)";
  meta =
    if hive ? meta && hive ? network then
      throw "the hive has both meta and network (its older name): keep meta"
    else
      hive.meta or hive.network or { };
  reserved = [
    "meta"
    "network"
    "defaults"
  ];
  names = builtins.filter (n: !builtins.elem n reserved) (builtins.attrNames hive);

  # A nixpkgs as a hive may name it: a path to it, its function, or an initialised package set.
  initialise =
    where: p:
    if builtins.isPath p || builtins.isString p || (builtins.isAttrs p && p ? outPath && !(p ? lib)) then
      initialise where (import p)
    else if builtins.isFunction p then
      p { }
    else if builtins.isAttrs p && p ? lib then
      p
    else
      throw "${where}: not a nixpkgs (a path to one, its function, or an initialised package set)";
  nixpkgs = initialise "meta.nixpkgs" (meta.nixpkgs or <nixpkgs>);
  pkgsOf =
    name:
    if (meta.nodeNixpkgs or { }) ? ${name} then
      initialise "meta.nodeNixpkgs.${name}" meta.nodeNixpkgs.${name}
    else
      nixpkgs;

  keyOptions =
    {
      name,
      config,
      lib,
      ...
    }:
    let
      inherit (lib) mkOption types;
    in
    {
      options = {
        name = mkOption {
          type = types.str;
          default = name;
        };
        text = mkOption {
          type = types.nullOr types.str;
          default = null;
        };
        keyFile = mkOption {
          type = types.nullOr types.path;
          default = null;
          apply = v: if v == null then null else toString v;
        };
        keyCommand = mkOption {
          type = types.nullOr (types.listOf types.str);
          default = null;
        };
        destDir = mkOption {
          type = types.path;
          default = "/run/keys";
        };
        path = mkOption {
          type = types.path;
          default = "${config.destDir}/${config.name}";
        };
        user = mkOption {
          type = types.str;
          default = "root";
        };
        group = mkOption {
          type = types.str;
          default = "root";
        };
        permissions = mkOption {
          type = types.str;
          default = "0600";
        };
        uploadAt = mkOption {
          type = types.enum [
            "pre-activation"
            "post-activation"
          ];
          default = "pre-activation";
        };
      };
    };

  deploymentOptions =
    { name, lib, ... }:
    let
      inherit (lib) mkOption types;
      option = type: default: mkOption { inherit type default; };
    in
    {
      options.deployment = {
        targetHost = option (types.nullOr types.str) name;
        targetPort = option (types.nullOr types.int) null;
        targetUser = option (types.nullOr types.str) "root";
        allowLocalDeployment = option types.bool false;
        buildOnTarget = option types.bool false;
        tags = option (types.listOf types.str) [ ];
        keys = option (types.attrsOf (types.submodule keyOptions)) { };
        replaceUnknownProfiles = option types.bool true;
        privilegeEscalationCommand = option (types.listOf types.str) [
          "sudo"
          "-H"
          "--"
        ];
        sshOptions = option (types.listOf types.str) [ ];
      };
    };

  modulesOf =
    name:
    let
      m = hive.${name};
    in
    if builtins.isList m then m else [ m ];

  evalNode =
    name: extra:
    let
      pkgs = pkgsOf name;
    in
    import (pkgs.path + "/nixos/lib/eval-config.nix") {
      system = pkgs.stdenv.hostPlatform.system or pkgs.system;
      modules = [
        deploymentOptions
        # The hive's package set keeps its overlays and config in each node, as colmena's do.
        (
          { lib, ... }:
          {
            nixpkgs.overlays = lib.mkBefore (pkgs.overlays or [ ]);
            nixpkgs.config = lib.mkBefore (pkgs.config or { });
          }
        )
        (hive.defaults or { })
      ]
      ++ extra
      ++ modulesOf name;
      specialArgs = {
        inherit name;
        nodes = unchecked;
      }
      // (meta.specialArgs or { })
      // ((meta.nodeSpecialArgs or { }).${name} or { });
    };
  each = f: builtins.listToAttrs (map (name: { inherit name; value = f name; }) names);
  # What `nodes` is to the modules: unchecked, as colmena's is (a node may read another's).
  unchecked = each (name: evalNode name [ { _module.check = false; } ]);
  nodes = each (name: evalNode name [ ]);
in
{
  inherit nodes meta;
  deployment = builtins.mapAttrs (_: node: node.config.deployment) nodes;
  toplevel = builtins.mapAttrs (_: node: node.config.system.build.toplevel) nodes;
}
