# nixship's Nix functions, which need no nixpkgs of their own: the flake's `lib`. A fleet in a
# flake is an output (`nixship`) with the keys of the fleet file (docs/fleet.md); these make its
# hosts from the NixOS configurations that import nixosModules.deployment, or from a colmena
# hive (evaluated by the hive's own nixpkgs).
let
  # Configurations that say how they are reached (they import the deployment module). Asked
  # with `?`, so that an error in a host's settings is met (and named) at that host.
  deployed =
    configurations:
    builtins.filter (name: (configurations.${name}.config.nixship or { }) ? deployment) (
      builtins.attrNames configurations
    );
  # `mode` is the module's name for the fleet file's `delivery`, which it still reads.
  deploymentOf =
    name: configuration:
    let
      d = configuration.config.nixship.deployment;
      mode = d.mode or null;
      delivery = d.delivery or "ssh";
    in
    # delivery's default is ssh: only a delivery set to something else can disagree with mode.
    if mode != null && delivery != "ssh" && mode != delivery then
      throw "nixosConfigurations.${name}: nixship.deployment.mode (${mode}) and its former name delivery (${delivery}) differ: set mode alone"
    else
      removeAttrs d [ "mode" ] // { delivery = if mode != null then mode else delivery; };
in
{
  /**
    The fleet whose hosts are `configurations` (e.g. `self.nixosConfigurations`) that import
    nixosModules.deployment: each host is named as its configuration, runs it, and takes its
    tags, address, mode (the fleet's delivery), ssh user, … from `config.nixship.deployment`; a host's `policy` becomes the
    fleet's `policies.<name>`. Every other argument is a key of the fleet (cache, ssh, policy,
    policies, releases, deltas, …) and is kept as given; `hosts` and `policies` given here are
    laid over those made from the configurations.
  */
  fleetFromConfigurations =
    {
      configurations,
      hosts ? { },
      policies ? { },
      ...
    }@fleet:
    let
      names = deployed configurations;
      eachHost =
        value:
        builtins.listToAttrs (
          map (name: {
            inherit name;
            value = value (deploymentOf name configurations.${name}) configurations.${name};
          }) names
        );
    in
    removeAttrs fleet [ "configurations" ]
    // {
      hosts = eachHost (d: configuration: removeAttrs d [ "policy" ] // { system = configuration; }) // hosts;
      # A host without a policy of its own has none here: null is left out of the fleet, as
      # every unset option is.
      policies = eachHost (d: _: if d.policy or { } == { } then null else d.policy) // policies;
    };

  /**
    A colmena hive (`import ./hive.nix`, or a flake's `colmena` output) read as colmena reads
    it: `nodes.NAME` is each node's configuration (a host's `system` may be it), `deployment.NAME`
    its colmena options. See colmena-hive.nix; `nixship init --from colmena` writes a fleet
    that uses it (docs/coming-from-colmena.md).
  */
  readColmenaHive = import ./colmena-hive.nix;
}
