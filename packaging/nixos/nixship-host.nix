# A host that nixship deploys over SSH or SSM, with its trust pinned: `services.nixship-host`.
# It installs `nixship-activate` (the built activate.sh of `package`, copied into a store path of
# its own, with the host's own trust: the substituters and keys below, in a store file), and
# with `deployUser` the one sudoers rule
# that lets that normal user run it as root. That user can then activate, confirm, abort, roll
# back and prune systems signed by the pinned keys, and nothing else as root: it cannot make
# the host trust another key, run a command of its choice, or choose where secrets go. The
# system carries its own health checks (nixship/health.json) and the secrets it takes
# (nixship/secrets), which the pinned script reads from the signed system. See docs/pinned-hosts.md.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) literalExpression mkIf mkOption types;
  cfg = config.services.nixship-host;
  text = import ./nixship-activate.nix;

  name = types.strMatching "[a-z_][a-z0-9_-]{0,31}";
  publicKey = types.strMatching text.keyPattern;
  url = types.strMatching text.urlPattern;
  # A secret's fields as activate.sh reads a bundle line (its check_bundle).
  account = types.strMatching "([a-z_][a-z0-9_-]*[$]?|[0-9]+)";
  secretName = "[A-Za-z0-9][A-Za-z0-9_.-]*";

  # The script as nixship's build assembled it (dist/host/activate.sh in the package), copied:
  # it names no store path, so the host's closure gets the file alone.
  script = pkgs.runCommandLocal "nixship-activate.sh" { } ''
    cp ${cfg.package}/lib/node_modules/nixship/dist/host/activate.sh $out
  '';
  trustFile = pkgs.writeText "nixship-trust" (
    text.trustText { inherit (cfg) substituters trustedKeys; }
  );
  activate = pkgs.writeTextFile {
    name = "nixship-activate";
    destination = "/bin/nixship-activate";
    executable = true;
    text = text.wrapperText {
      shell = pkgs.runtimeShell;
      env = "${pkgs.coreutils}/bin/env";
      inherit script trustFile;
      path = lib.makeBinPath [
        config.nix.package
        pkgs.coreutils
        pkgs.gnused
        pkgs.gnugrep
        pkgs.gawk
        pkgs.findutils
        pkgs.getent
        pkgs.curl
        pkgs.age
        # Deltas (docs/deltas.md): a pinned host applies them with its own zstd.
        pkgs.zstd
        config.systemd.package
      ];
    };
  };

  # nixship/health-commands: the command checks the system declares, one per line: the only
  # commands a pinned activation runs as root.
  commandsText = lib.concatStrings (
    map (
      c:
      if builtins.match ".*[\n\r].*" c.run != null then
        throw "services.nixship-host.healthChecks: a command check is one line: ${c.run}"
      else
        "${c.run}\n"
    ) (cfg.healthChecks.commands or [ ])
  );

  # nixship/secrets: one line per secret the system takes, "NAME OWNER GROUP MODE PATH".
  secretsText = lib.concatStrings (
    lib.mapAttrsToList (
      secret: s: "${secret} ${s.owner} ${s.group} ${s.mode} ${s.path}\n"
    ) cfg.secrets
  );
in
{
  options.services.nixship-host = {
    enable = mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = ''
        Whether to install `nixship-activate` with this host's pinned trust, so that nixship
        deploys it through that script (as root, or as {option}`services.nixship-host.deployUser`
        through sudo) and the trust a deployer passes changes nothing.
      '';
    };

    package = mkOption {
      type = types.package;
      example = literalExpression "inputs.nixship.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = ''
        The nixship package whose built activation script (`dist/host/activate.sh`) the host
        installs. nixship is not in nixpkgs, so this file sets no default; nixship's flake's
        `nixosModules.host` imports it with the flake's own package as the default.
      '';
    };

    substituters = mkOption {
      type = types.listOf url;
      default = [ ];
      example = [ "https://my-fleet-cache.s3.eu-west-1.amazonaws.com" ];
      description = ''
        The binary caches this host realises systems from (the fleet's cache as the host
        reaches it). A system not in the store already, nor in one of these, is not activated.
      '';
    };

    trustedKeys = mkOption {
      type = types.nonEmptyListOf publicKey;
      example = [ "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=" ];
      description = ''
        Public keys (`name:base64`) of the fleet's cache. Every system, and every path of its
        closure, must be signed by one of them, whether substituted or already in the store.
        They are also appended to {option}`nix.settings.trusted-public-keys`.
      '';
    };

    deployUser = mkOption {
      type = types.nullOr name;
      default = null;
      example = "deploy";
      description = ''
        A normal user that may run `/run/current-system/sw/bin/nixship-activate` as root
        through sudo, without a password, and nothing else (one sudoers rule). Set the
        fleet file's `ssh.user` to it and `ssh.sudo` to true. null: no such rule.
      '';
    };

    createDeployUser = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to declare {option}`services.nixship-host.deployUser` as a normal user, with
        {option}`services.nixship-host.deployUserKeys` as its authorized SSH keys. false: the
        user is declared elsewhere.
      '';
    };

    deployUserKeys = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... deployer" ];
      description = "SSH public keys that may log in as the deploy user.";
    };

    healthChecks = mkOption {
      type = types.nullOr (types.attrsOf types.anything);
      default = null;
      example = {
        commands = [
          {
            run = "systemctl is-active nginx";
            timeout = 20;
          }
        ];
      };
      description = ''
        Health checks this system declares itself, in the shape of the fleet file's
        `policy.health` (written to the system's `nixship/health.json`, and its commands, one
        per line, to `nixship/health-commands`). On a pinned host these are the only command
        checks that run: a deployer cannot name commands for root.
      '';
    };

    secrets = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            path = mkOption {
              type = types.strMatching "/run(/[A-Za-z0-9_@+][A-Za-z0-9._@+-]*)+";
              description = "Where the decrypted secret is installed (on a tmpfs under /run).";
            };
            owner = mkOption {
              type = account;
              default = "root";
              description = "The secret file's owner.";
            };
            group = mkOption {
              type = account;
              default = "root";
              description = "The secret file's group.";
            };
            mode = mkOption {
              type = types.strMatching "[0-7]{4}";
              default = "0400";
              description = "The secret file's mode.";
            };
          };
        }
      );
      default = { };
      example = {
        db-password = {
          path = "/run/secrets/db-password";
          owner = "postgres";
        };
      };
      description = ''
        The secrets this system takes (by the fleet file's secret names), and where each goes,
        owned by whom and with which mode. A pinned activation installs a secret only when the
        bundle's line says exactly this, so a deployer chooses a secret's content, never its
        place, owner or mode. Written to the system's `nixship/secrets`.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = map (secret: {
      assertion = builtins.match secretName secret != null && builtins.match ".*[.][.].*" secret == null;
      message = "services.nixship-host.secrets.${secret}: a secret's name is a letter or digit, then letters, digits, '.', '_' or '-' (no '..')";
    }) (builtins.attrNames cfg.secrets);

    environment.systemPackages = [ activate ];

    nix.settings.trusted-public-keys = cfg.trustedKeys;

    # At boot (and at each switch, where it finds them installed and does nothing), before
    # services start: the secrets of the last bundle installed, which the boot's empty /run
    # lost, installed again from the copy activate.sh keeps on the disk (docs/secrets.md).
    system.activationScripts.nixship-secrets = {
      deps = [
        "specialfs"
        "users"
        "groups"
      ];
      text = ''
        ${activate}/bin/nixship-activate restore-secrets --system "$systemConfig" >/dev/null ||
          echo "nixship: the secrets kept on the disk could not be installed again (see above)" >&2
      '';
    };

    system.extraSystemBuilderCmds = ''
      mkdir -p $out/nixship
    ''
    + lib.optionalString (cfg.healthChecks != null) ''
      cp ${pkgs.writeText "health.json" (builtins.toJSON cfg.healthChecks)} $out/nixship/health.json
      cp ${pkgs.writeText "health-commands" commandsText} $out/nixship/health-commands
    ''
    + lib.optionalString (cfg.secrets != { }) ''
      cp ${pkgs.writeText "nixship-secrets" secretsText} $out/nixship/secrets
    '';

    security.sudo.extraRules = mkIf (cfg.deployUser != null) [
      {
        users = [ cfg.deployUser ];
        # As root only (NixOS's default is any user and group).
        runAs = "root";
        commands = [
          {
            command = "/run/current-system/sw/bin/nixship-activate";
            options = [ "NOPASSWD" ];
          }
        ];
      }
    ];

    users.users = mkIf (cfg.deployUser != null && cfg.createDeployUser) {
      ${cfg.deployUser} = {
        isNormalUser = true;
        description = "nixship deploys (runs nixship-activate through sudo)";
        openssh.authorizedKeys.keys = cfg.deployUserKeys;
      };
    };
  };
}
