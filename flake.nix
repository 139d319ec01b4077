# nixship as a Nix package: built from package-lock.json by nixpkgs' buildNpmPackage and
# importNpmLock (no dependency hash to keep up to date), with the agent's NixOS module, an app
# and an overlay, and what a fleet written in a flake needs (nixosModules.deployment, lib). The
# example systems the tests deploy are a separate flake: examples/flake.nix.
{
  description = "nixship: build NixOS systems once, push them signed into a Nix binary cache, and roll them out to a fleet";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = lib.genAttrs systems;

      packageJson = lib.importJSON ./package.json;

      # What the build reads and nothing more: the sources tsc compiles (without their unit
      # tests), the npm files, and what package.json's `files` ships besides dist/ (which the
      # build makes). node_modules, dist, tests, docs and anything secret beside the flake
      # stay out of the store, and a change to them does not rebuild the package.
      wanted = [
        "package.json"
        "package-lock.json"
        "tsconfig.json"
        "tsconfig.build.json"
        # The dashboard's browser script: `npm run build` compiles it with its own tsconfig.
        "tsconfig.client.json"
        "src"
        # `npm run build` assembles the host script and writes the SSM document with these.
        "scripts/assemble-activate.mjs"
        "scripts/write-ssm-document.mjs"
        # ... and bundles the CLI with this.
        "scripts/bundle-cli.mjs"
      ]
      ++ builtins.filter (file: file != "dist") packageJson.files;
      root = toString ./.;
      src = lib.cleanSourceWith {
        name = "nixship-source";
        src = ./.;
        filter =
          path: _type:
          let
            rel = lib.removePrefix "${root}/" (toString path);
          in
          !(lib.hasSuffix ".test.ts" rel)
          # the entry itself, something inside it, or a directory on the way to it
          && lib.any (keep: rel == keep || lib.hasPrefix "${keep}/" rel || lib.hasPrefix "${rel}/" keep) wanted;
      };

      # package-lock.json records no registry URLs (npm's omit-lockfile-registry-resolved),
      # but importNpmLock fetches each package from its `resolved` URL, checked against its
      # `integrity`; without one it would leave the package for npm to fetch, which the
      # sandbox forbids. The public registry keeps a package's tarball at
      # NAME/-/BASENAME-VERSION.tgz. Entries without `integrity` are bundled inside their
      # parent's tarball (inBundle) and are not fetched on their own.
      tarballUrl = name: version: "https://registry.npmjs.org/${name}/-/${baseNameOf name}-${version}.tgz";
      lastName =
        key:
        let
          parts = builtins.split "node_modules/" key;
        in
        builtins.elemAt parts (builtins.length parts - 1);
      withRegistryUrls =
        lock:
        lock
        // {
          packages = builtins.mapAttrs (
            key: entry:
            if key == "" || entry ? resolved || !(entry ? integrity) then
              entry
            else
              entry // { resolved = tarballUrl (entry.name or (lastName key)) entry.version; }
          ) lock.packages;
        };

      nixship =
        {
          lib,
          buildNpmPackage,
          importNpmLock,
        }:
        buildNpmPackage {
          pname = packageJson.name;
          inherit (packageJson) version;
          inherit src;
          npmDeps = importNpmLock {
            npmRoot = src;
            packageLock = withRegistryUrls (lib.importJSON (src + "/package-lock.json"));
          };
          npmConfigHook = importNpmLock.npmConfigHook;
          # The hook installs the packages without their scripts, then runs `npm rebuild`,
          # which compiles zstd-napi's libzstd (package.json's allowScripts approves its
          # install script) with node-gyp, nodejs' headers and python, which buildNpmPackage
          # and the hook provide; then `npm run build` (tsc). Built from source always: with
          # the sandbox off, prebuild-install would otherwise download a binary.
          npmBuildScript = "build";
          env.npm_config_build_from_source = "true";
          meta = {
            inherit (packageJson) description;
            license = lib.licenses.mit;
            mainProgram = "nixship";
          };
        };
    in
    {
      packages = forAllSystems (system: {
        default = nixpkgs.legacyPackages.${system}.callPackage nixship { };
      });

      apps = forAllSystems (system: {
        default = {
          type = "app";
          program = "${self.packages.${system}.default}/bin/nixship";
          meta.description = packageJson.description;
        };
      });

      overlays.default = final: prev: { nixship = final.callPackage nixship { }; };

      # packaging/nixos/nixship-agent.nix with this flake's package as its default. The key
      # lets a configuration import both names without defining the package twice.
      nixosModules.agent =
        {
          config,
          lib,
          pkgs,
          ...
        }:
        {
          key = "nixship#nixosModules.agent";
          imports = [
            ./packaging/nixos/nixship-agent.nix
            self.nixosModules.host
          ];
          config.services.nixship-agent.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          # An agent host has nixship-activate too, pinned to the keys the agent trusts, so
          # that an operator's `nixship rollback` over SSH (as a deploy user) is pinned alike.
          config.services.nixship-host = lib.mkIf config.services.nixship-agent.enable {
            enable = lib.mkDefault true;
            trustedKeys = lib.mkDefault config.services.nixship-agent.cacheKeys;
          };
        };
      # packaging/nixos/nixship-host.nix: nixship-activate with the host's pinned trust, and
      # the sudoers rule of a non-root deploy user (ssh and ssm hosts; docs/pinned-hosts.md).
      # Its package, by default this flake's, gives the host its built activate.sh.
      nixosModules.host =
        { lib, pkgs, ... }:
        {
          key = "nixship#nixosModules.host";
          imports = [ ./packaging/nixos/nixship-host.nix ];
          config.services.nixship-host.package =
            lib.mkDefault
              self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      nixosModules.default = self.nixosModules.agent;
      # packaging/nixos/nixship-deployment.nix: `nixship.deployment`, how nixship reaches a
      # host (its tags, address, delivery, policy, …), which lib.fleetFromConfigurations reads.
      nixosModules.deployment = {
        key = "nixship#nixosModules.deployment";
        imports = [ ./packaging/nixos/nixship-deployment.nix ];
      };

      # packaging/nix/lib.nix: a fleet in a flake made from its nixosConfigurations
      # (docs/fleet.md). Plain Nix: it needs no nixpkgs.
      lib = import ./packaging/nix/lib.nix;
    };
}
