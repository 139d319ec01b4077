{
  description = "nixship example systems: plain derivations (builder /bin/sh), no nixpkgs needed";

  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      mkSystem = import ./system.nix;
    in {
      packages = forAll (system: {
        web-v1 = mkSystem { inherit system; version = "1"; };
        web-v2 = mkSystem { inherit system; version = "2"; };
      });
    };
}
