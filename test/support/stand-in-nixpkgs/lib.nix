# The stand-in nixpkgs' lib: options and types as NixOS modules declare them (recorded, not
# checked), the priorities colmena's evaluation uses (mkBefore: the value as it is), and
# nixosSystem.
rec {
  mkOption = attrs: attrs // { _type = "option"; };
  mkBefore = value: value;
  mkDefault = value: value;
  types =
    let
      type = name: { inherit name; };
    in
    {
      str = type "str";
      int = type "int";
      bool = type "bool";
      path = type "path";
      attrs = type "attrs";
      unspecified = type "unspecified";
      listOf = elem: type "listOf" // { inherit elem; };
      nullOr = elem: type "nullOr" // { inherit elem; };
      enum = values: type "enum" // { inherit values; };
      attrsOf = elem: type "attrsOf" // { inherit elem; };
      submodule = module: type "submodule" // { inherit module; };
    };
  nixosSystem = args: import ./nixos/lib/eval-config.nix args;
}
