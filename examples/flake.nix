{
  description = "nixship example systems: stand-ins for NixOS toplevels that honour the switch-to-configuration contract; plain derivations (builder /bin/sh), no nixpkgs needed";

  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      mkSystem = import ./system.nix;
    in {
      packages = forAll (system: {
        # Good versions: each serves its name on port 80 and answers GET /health with 200.
        web-v1 = mkSystem { inherit system; name = "web-v1"; version = "1"; };
        web-v2 = mkSystem { inherit system; name = "web-v2"; version = "2"; };
        # A small change from web-v2, for benchmarks.
        web-v3 = mkSystem { inherit system; name = "web-v3"; version = "3"; };
        # Good versions that one test alone deploys each (pruned away, then checked gone from
        # the host's store): lab hosts share the machine's /proc, and Nix's collector on one host
        # keeps a path that a process of another host names, such as an activation of the same
        # system under way there (docs/development.md).
        web-pruned = mkSystem { inherit system; name = "web-pruned"; version = "pruned"; };
        web-pruned-agent = mkSystem { inherit system; name = "web-pruned-agent"; version = "pruned-agent"; };
        web-pruned-current = mkSystem { inherit system; name = "web-pruned-current"; version = "pruned-current"; };
        # web-v3 with another kernel: a switch does not load it, a reboot does.
        web-v4 = mkSystem { inherit system; name = "web-v4"; version = "4"; kernel = "6.12"; };
        # web-v3 with another kernel that does not boot: it switches, but a reboot into it panics.
        web-noboot = mkSystem { inherit system; name = "web-noboot"; version = "noboot"; kernel = "6.13"; boots = false; };
        # web-v4's kernel, and boots, but fails an HTTP health check after the reboot.
        web-v4-broken = mkSystem { inherit system; name = "web-v4-broken"; version = "4-broken"; kernel = "6.12"; health = "fail"; };
        # Activates cleanly, but fails an HTTP health check (GET /health answers 500).
        web-broken = mkSystem { inherit system; name = "web-broken"; version = "broken"; health = "fail"; };
        # Its service fails to start: switch-to-configuration exits 4, as NixOS does.
        web-failing = mkSystem { inherit system; name = "web-failing"; version = "failing"; start = "fail"; };
        # Its switch-to-configuration (switch, test) stops the old service, points
        # /run/current-system at itself, then hangs (`sleep 100000`): only a timeout ends it.
        web-hang = mkSystem { inherit system; name = "web-hang"; version = "hang"; start = "hang"; };
        # Alike but for one package's version (hello 2.12 -> 2.12.1), for the plan's closure
        # diff: one tag, so that their other paths have the same names.
        web-hello = mkSystem {
          inherit system; name = "web-hello"; version = "hello"; tag = "hello";
          packages = { hello = "2.12"; };
        };
        web-hello-next = mkSystem {
          inherit system; name = "web-hello-next"; version = "hello-next"; tag = "hello";
          packages = { hello = "2.12.1"; };
        };
        # A rebuild, for deltas (docs/deltas.md): web-deltas-v2 is web-deltas-v1 with every
        # store path new (another nonce) and the same names, as a change low in the graph makes
        # it; with libraries large enough for a delta to pay, and a zstd in sw/bin, as a NixOS
        # system has one, which the hosts apply the deltas with.
        web-deltas-v1 = mkSystem {
          inherit system; name = "web-deltas-v1"; version = "deltas-v1"; tag = "deltas";
          libraries = { a = 48; b = 48; c = 48; d = 48; }; zstd = "1.5.4"; nonce = "1";
        };
        web-deltas-v2 = mkSystem {
          inherit system; name = "web-deltas-v2"; version = "deltas-v2"; tag = "deltas";
          libraries = { a = 48; b = 48; c = 48; d = 48; }; zstd = "1.5.4"; nonce = "2";
        };
        # Healthy as it starts, and its /health stays green, but 4 s after it starts half of its
        # GET /work requests fail (500): what only its /metrics shows, for bake and analysis.
        web-errors-later = mkSystem {
          inherit system; name = "web-errors-later"; version = "errors-later"; errors = 50; errorsAfter = 4;
        };
        # A steady error ratio from the start (10%, 30%, 12% of GET /work), for a canary against
        # its baseline: 30% is 3x web-errors-10's, 12% within a tolerance of 1.5.
        web-errors-10 = mkSystem { inherit system; name = "web-errors-10"; version = "errors-10"; errors = 10; };
        web-errors-30 = mkSystem { inherit system; name = "web-errors-30"; version = "errors-30"; errors = 30; };
        web-errors-12 = mkSystem { inherit system; name = "web-errors-12"; version = "errors-12"; errors = 12; };
        # Declares its own health check (nixship/health.json): it passes once the host has
        # /run/web-checked.ready.
        web-checked = mkSystem {
          inherit system; name = "web-checked"; version = "checked";
          checks = { commands = [ { run = "test -e /run/web-checked.ready"; timeout = 2; } ]; };
        };
      });
    };
}
