# nixship's pull agent as a NixOS module: `services.nixship-agent`. It writes the agent's
# config to /etc/nixship/agent.json, trusts the cache keys in the host's Nix, and runs
# `nixship agent` as a service that the switches it performs never restart. See docs/agent.md.
{ config, lib, pkgs, ... }:

let
  inherit (lib) literalExpression mkIf mkOption types;
  cfg = config.services.nixship-agent;

  # The checks the agent makes (src/agent/config.ts), so that a mistake fails the
  # evaluation instead of the agent, possibly only at its next restart. The agent still
  # checks everything; these patterns only catch the common slips early.
  name = types.strMatching "[a-z0-9][a-z0-9-]{0,62}";
  absolute = types.strMatching "/.*";
  publicKey = types.strMatching "[^:[:space:]]+:[A-Za-z0-9+/]{43}=";
  storeUrl = types.strMatching "(/|file:///|s3://).+";
  loopback = types.strMatching "(127[.][0-9]{1,3}[.][0-9]{1,3}[.][0-9]{1,3}|[[]::1[]]):[0-9]{1,5}";

  # Under /var/lib, systemd's StateDirectory= creates stateDir; elsewhere a tmpfiles rule.
  varLib = "/var/lib/";
  inVarLib = builtins.substring 0 (builtins.stringLength varLib) cfg.stateDir == varLib;
  stateDirectoryName = builtins.substring (builtins.stringLength varLib) (-1) cfg.stateDir;

  # The environment file holds credentials: it must stay out of the world-readable Nix
  # store. A path value (./agent.env) is one Nix copies there whenever it is interpolated,
  # and in a flake it is there already; a string naming a store path is there by definition.
  envFile = cfg.environmentFile;
  storePrefix = builtins.storeDir + "/";
  envFileInStore =
    envFile != null
    && (
      builtins.isPath envFile
      || builtins.substring 0 (builtins.stringLength storePrefix) envFile == storePrefix
    );
in
{
  options.services.nixship-agent = {
    enable = mkOption {
      type = types.bool;
      default = false;
      example = true;
      description = ''
        Whether to run the nixship pull agent, which polls a channel in the fleet's store
        and activates this host's entry of each new signed release.
      '';
    };

    package = mkOption {
      type = types.package;
      example = literalExpression "inputs.nixship.packages.\${pkgs.stdenv.hostPlatform.system}.default";
      description = ''
        The nixship package that provides `bin/nixship`. nixship is not in nixpkgs, so this
        file sets no default; nixship's flake's `nixosModules.agent` imports it with the
        flake's own package as the default.
      '';
    };

    store = mkOption {
      type = storeUrl;
      example = "s3://my-fleet/prod?region=eu-west-1";
      description = ''
        The store URL that holds the releases, channels, status objects and binary cache:
        `s3://bucket[/prefix][?region=R&endpoint=URL&profile=P]`, `file:///dir` or `/dir`.
      '';
    };

    channel = mkOption {
      type = name;
      example = "prod";
      description = ''
        The channel to follow: the agent polls `channels/<channel>.json` in the store.
      '';
    };

    hostName = mkOption {
      type = name;
      default = config.networking.hostName;
      defaultText = literalExpression "config.networking.hostName";
      example = "web1";
      description = ''
        This host's name in releases (written as `host` in the config file). It must
        match `[a-z0-9][a-z0-9-]*`, at most 63 characters.
      '';
    };

    releaseKeys = mkOption {
      type = types.nonEmptyListOf publicKey;
      example = [ "release-1:tl1xIh0jT4GHqL+CHzULR1xNvHlRjsdv6oVH9TGTj9s=" ];
      description = ''
        Public keys (`name:base64`) whose signed releases the agent trusts. A release not
        signed by one of them is never activated.
      '';
    };

    cacheKeys = mkOption {
      type = types.nonEmptyListOf publicKey;
      example = [ "cache.example.org-1:lWwOmhFw0ds2rFa+bN7VVTYVXK7ujJv76J6gVTXevhM=" ];
      description = ''
        Public keys (`name:base64`) that sign the fleet's binary cache. The host's Nix
        substitutes only paths signed by one of them; they are also appended to
        {option}`nix.settings.trusted-public-keys`.
      '';
    };

    stateDir = mkOption {
      type = absolute;
      default = "/var/lib/nixship-agent";
      description = ''
        Where the agent keeps its state (the last release seen, the one in progress, and
        releases that failed). Created with mode 0700.
      '';
    };

    pollInterval = mkOption {
      type = types.ints.between 1 86400;
      default = 30;
      description = "Seconds between two polls of the channel.";
    };

    jitter = mkOption {
      type = types.numbers.between 0 1;
      default = 0.1;
      description = ''
        How far each wait may stray from {option}`services.nixship-agent.pollInterval`, as a
        fraction of it, so that a fleet's hosts do not poll in lockstep.
      '';
    };

    proxyListen = mkOption {
      type = loopback;
      default = "127.0.0.1:0";
      example = "[::1]:37515";
      description = ''
        Where the agent's cache proxy, which the host's Nix substitutes through, listens:
        `127.x.x.x:PORT` or `[::1]:PORT`; port 0 takes any free port.
      '';
    };

    activationTimeout = mkOption {
      type = types.ints.between 1 86400;
      default = 600;
      description = ''
        Seconds one activation may take before the agent treats it as failed.
      '';
    };

    heartbeatEvery = mkOption {
      type = types.ints.between 1 1000;
      default = 10;
      description = ''
        Polls between two heartbeats: one small write to the store, by which
        `nixship status` tells a live agent from an offline one.
      '';
    };

    environment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { AWS_REGION = "eu-west-1"; };
      description = ''
        Environment variables for the agent, such as `AWS_REGION` or `AWS_PROFILE`. Keep
        secrets out of here (they would land in the Nix store); use
        {option}`services.nixship-agent.environmentFile`.
      '';
    };

    environmentFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/keys/nixship-agent.env";
      description = ''
        A file of `KEY=VALUE` lines read when the agent starts, for AWS credentials where no
        instance role provides them. Give it as a string outside the Nix store, such as
        `"/run/keys/nixship-agent.env"`: a path value (`./agent.env`) or a store path is
        refused, since the file would be readable by every user in the world-readable store.
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = !envFileInStore;
        message = ''
          services.nixship-agent.environmentFile is ${
            if builtins.isPath envFile then "a Nix path value" else "a path in the Nix store"
          }, so the credentials in it are (or would be copied) in the world-readable Nix store.
          Give the file as a string outside the store, such as "/run/keys/nixship-agent.env",
          placed on the host by a secrets tool (agenix, sops-nix) or by hand, mode 0600.'';
      }
    ];

    environment.etc."nixship/agent.json".text = builtins.toJSON {
      inherit (cfg)
        store
        channel
        releaseKeys
        cacheKeys
        stateDir
        pollInterval
        jitter
        proxyListen
        activationTimeout
        heartbeatEvery
        ;
      host = cfg.hostName;
    };

    nix.settings.trusted-public-keys = cfg.cacheKeys;

    systemd.tmpfiles.rules = mkIf (!inVarLib) [ "d ${cfg.stateDir} 0700 root root -" ];

    systemd.services.nixship-agent = {
      description = "nixship pull agent";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      # The agent runs switch-to-configuration itself. If that switch restarted or stopped
      # the agent, the activation's health checks, rollback and report would die with it.
      # A new agent takes over at the unit's next restart (a crash, or a reboot).
      restartIfChanged = false;
      stopIfChanged = false;
      # nix-store and nix-env for activate.sh, which also uses coreutils and awk (systemd,
      # sed and grep are on every NixOS service's PATH).
      path = [ config.nix.package pkgs.coreutils pkgs.gawk ];
      environment = cfg.environment;
      startLimitIntervalSec = 0;
      serviceConfig = {
        Type = "exec";
        ExecStart = "${cfg.package}/bin/nixship agent --config /etc/nixship/agent.json";
        Restart = "always";
        RestartSec = 5;
        StateDirectory = mkIf inVarLib stateDirectoryName;
        StateDirectoryMode = "0700";
        EnvironmentFile = mkIf (envFile != null && !envFileInStore) envFile;
        UMask = "0022";
        # A stop signals the agent alone, which lets the activation in progress finish (as
        # packaging/systemd/nixship-agent.service says); what is left after 30 min is killed.
        KillMode = "mixed";
        TimeoutStopSec = "30min";
        # As packaging/systemd/nixship-agent.service: nothing that keeps it from writing
        # /nix, the system profile and /run/nixship or from running health checks as root.
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectKernelLogs = true;
        RestrictRealtime = true;
        LockPersonality = true;
      };
    };
  };
}
