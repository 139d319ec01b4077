# How nixship reaches this host: `nixship.deployment`, the host's entry in a fleet written in
# the flake. Each option is a host key of the fleet file (docs/fleet.md), with its meaning;
# `policy` is this host's entry of the fleet's `policies`; `mode` is the fleet file's `delivery`
# (the module's former name for it, `delivery`, is still read). nixship's
# `lib.fleetFromConfigurations` reads `config.nixship.deployment` of each configuration that
# imports this module and makes the fleet's hosts from them. The types here are loose on
# purpose: nixship checks every value with the same rules as the fleet file, and names the
# attribute (`nixship.hosts.web1.address`) when one is wrong.
{ lib, ... }:

let
  inherit (lib) mkOption types;
  optional =
    type: description:
    mkOption {
      type = types.nullOr type;
      default = null;
      inherit description;
    };
in
{
  options.nixship.deployment = {
    tags = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "web" ];
      description = "The host's tags, which `--on @web` and the fleet's `policies.\"@web\"` select by.";
    };
    address = optional types.str "Where health checks reach the host (`{address}`); for ssh, also where ssh connects unless `sshHost` is set.";
    sshHost = optional types.str "The ssh destination when it differs from `address` (an ssh_config alias); ssh hosts only.";
    sshUser = optional types.str "The user ssh logs in as on this host; null: the fleet's `ssh.user` (root unless set). ssh hosts only.";
    mode = optional (types.enum [
      "ssh"
      "ssm"
      "agent"
    ]) "How the host gets its system: pushed over ssh, through AWS SSM, or pulled by its agent (the fleet file's `delivery`); null: `delivery` (ssh unless set).";
    delivery = mkOption {
      type = types.enum [
        "ssh"
        "ssm"
        "agent"
      ];
      default = "ssh";
      description = "The former name of `mode`, still read: `mode`, when set, is the host's mode.";
    };
    sudo = optional types.bool "Whether the deployer reaches this ssh host through its pinned nixship-activate by sudo; null: the fleet's `ssh.sudo`.";
    hostKey = optional types.str "The host's SSH ed25519 public key, which its secrets are encrypted to (ssm and agent hosts).";
    instanceId = optional types.str "The EC2 instance ID of an ssm host (or give `targets`).";
    targets = optional (types.listOf types.attrs) "The SSM targets of an ssm host: `[ { key = \"tag:Role\"; values = [ \"web\" ]; } ]`.";
    policy = mkOption {
      type = types.attrs;
      default = { };
      example = {
        canary = 0;
        health.commands = [ { run = "systemctl is-active nginx"; } ];
      };
      description = "This host's rollout policy, laid over the fleet's and its tags' (the fleet's `policies.<name>`).";
    };
  };
}
