# A stand-in for a NixOS system toplevel, built without nixpkgs (plain derivations, builder
# /bin/sh). Like a real toplevel it has bin/switch-to-configuration, nixos-version and a
# closure of several paths: a shared path every version references (the web service's program),
# a per-version path (its configuration under etc/), and the toplevel itself. See
# web/switch-to-configuration.sh for the activation contract.
{
  system,
  # The system's name, as nixos-version, / and /version report it, e.g. "web-v1".
  name,
  version,
  # "ok", or "fail": GET /health answers 500 (the service runs, but fails a health check).
  health ? "ok",
  # The percent of GET /work requests that answer 500 once `errorsAfter` seconds have passed
  # since the service started (its /health stays as `health` says): a fault health checks miss,
  # that its /metrics counter shows (docs/progressive-delivery.md).
  errors ? 0,
  errorsAfter ? 0,
  # "ok"; "fail": the service exits as it starts, so switch-to-configuration exits 4; or
  # "hang": switch-to-configuration stops the old service, points /run/current-system at
  # itself, then never ends (a switch that hangs, for activation timeouts).
  start ? "ok",
  # The kernel it boots (a stand-in: a version string in bzImage, an initrd, modules): a switch
  # does not load it, a reboot does.
  kernel ? "6.6",
  # false: a system that does not boot (its init panics, as a kernel that cannot mount its root
  # does); it switches like any other, only a reboot into it fails.
  boots ? true,
  # Health checks the system declares itself, in the shape of the fleet file's policy.health
  # (written to $out/nixship/health.json, which the deployer reads); null: none.
  checks ? null,
  # The end of its store paths' names; null: from name ("web-v1" -> "v1"). Two systems with one
  # tag have the same package names, so a closure diff between them shows only what changes.
  tag ? null,
  # Packages in its closure, name -> version ({ hello = "2.12"; }): each the store path
  # NAME-VERSION with bin/NAME, linked from sw/bin as a NixOS system's packages are.
  packages ? { },
  # Libraries in its closure, name -> KiB ({ ssl = 64; }): each the store path libNAME-1.0
  # holding lib/libNAME.so, that many KiB of fixed noise (as hard to compress as code) which
  # names the web service's store path every 16 KiB, as a binary's RUNPATH names its
  # dependencies: a rebuild below them changes only those names (deltas).
  libraries ? { },
  # Programs in its sw/bin, name -> a shell script's text, each in a store path of its own, as
  # environment.systemPackages puts a NixOS system's programs there (e.g. a nixship wrapper).
  programs ? { },
  # A host with pinned trust, as nixship's NixOS module (nixosModules.host) makes one:
  # sw/bin/nixship-activate runs activate.sh with this trust. { substituters; trustedKeys;
  # script (activate.sh); text (import packaging/nixos/nixship-activate.nix) }; null: none.
  pinned ? null,
  # The secrets it takes, as nixosModules.host's `secrets` declares them, written to
  # nixship/secrets: { db-password = { owner = "nobody"; group = "root"; mode = "0400";
  # path = "/run/keys/db-password"; }; }. A pinned activation installs no other.
  secrets ? { },
  # null, or a string in every derivation of it: store paths of the same names that no other
  # build has (tests that delete paths from the machine's store use such systems).
  nonce ? null,
  # null, or a version ("1.5.4"): a stand-in for nixpkgs' zstd in its sw/bin, as a NixOS system
  # has it (one of its required packages), which hosts apply deltas with by default
  # (docs/deltas.md). The store path zstd-VERSION-bin holds the machine's /usr/bin/zstd, of
  # whatever version it is: the host's delta step checks it is 1.4.5 or newer before it runs it.
  zstd ? null,
}:
let
  # "web-v1" -> "v1", so store paths read example-web-system-v1, example-web-etc-v1.
  tag' = if tag != null then tag else builtins.elemAt (builtins.match "(web-)?(.*)" name) 1;
  mk = drvName: script: derivation ({
    name = drvName;
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" script ];
    PATH = "/usr/bin:/bin";
  } // (if nonce == null then { } else { inherit nonce; }));
  # The web service, bin/example-web (web/server.c), compiled with the machine's C compiler: a
  # stand-in for a package nixpkgs would build, as this whole system is (the derivations are
  # unsandboxed, PATH=/usr/bin:/bin). It starts in a millisecond, where Node took 50 ms of CPU.
  share = mk "example-web-share" ''
    mkdir -p $out/bin
    # From a copy, stripped: the binary must not name the source's store path (a reference).
    cp ${./web/server.c} server.c
    cc -std=c11 -O2 -Wall -Wextra -s -o $out/bin/example-web server.c
  '';
  config = builtins.toJSON { inherit name version health start; };
  # The same settings as key=value lines, which the C service reads (no JSON parser there);
  # errors and errorsAfter only where set, so that the other systems' paths stay as they were.
  settings = { inherit name version health start; }
    // (if errors == 0 then { } else { inherit errors errorsAfter; });
  configLines = builtins.concatStringsSep "" (map (key:
    let value = toString settings.${key}; in
    if builtins.match "[^\n\r]{0,255}" value == null
    then throw "example-web's ${key} is one line of at most 255 bytes: ${value}"
    else "${key}=${value}\n"
  ) (builtins.filter (key: settings ? ${key}) [ "name" "version" "health" "start" "errors" "errorsAfter" ]));
  # Like a NixOS toplevel's kernel, initrd and kernel-modules links: one small path.
  boot = mk "example-kernel-${kernel}" ''
    mkdir -p $out/lib/modules/${kernel}
    echo 'example kernel ${kernel}' > $out/bzImage
    echo 'example initrd ${kernel}' > $out/initrd
  '';
  # A package of one version, whose bin/NAME says it.
  package = pname: version: mk "${pname}-${version}" ''
    mkdir -p $out/bin
    printf '#!/bin/sh\necho "GNU ${pname} ${version}"\n' > $out/bin/${pname}
    chmod 0555 $out/bin/${pname}
  '';
  library = lname: kib: mk "lib${lname}-1.0" ''
    mkdir -p $out/lib
    awk -v kib=${toString kib} -v ref=${share} 'BEGIN {
      srand(${toString (builtins.stringLength lname)}1);
      for (i = 0; i < kib * 32; i++) {
        printf "%08x%08x%08x%08x", rand() * 4294967295, rand() * 4294967295,
          rand() * 4294967295, rand() * 4294967295;
        if (i % 512 == 511) printf "%s", ref;
      }
    }' > $out/lib/lib${lname}.so
  '';
  program = pname: text: mk "${pname}-program" ''
    mkdir -p $out/bin
    cat > $out/bin/${pname} <<'EOS'
  ${text}
  EOS
    chmod 0555 $out/bin/${pname}
  '';
  # nixship-activate as the module installs it, from the module's own text (its trust file, its
  # wrapper); the lab's host has no nixpkgs, so its shell, env and PATH are the machine's.
  activator = mk "nixship-activate-${tag'}" (
    let
      trustFile = builtins.toFile "nixship-trust" (
        pinned.text.trustText { inherit (pinned) substituters trustedKeys; }
      );
      script = builtins.toFile "nixship-activate.sh" (builtins.readFile pinned.script);
    in
    ''
      mkdir -p $out/bin
      cat > $out/bin/nixship-activate <<'EOS'
    ${pinned.text.wrapperText {
      shell = "/bin/sh";
      env = "/usr/bin/env";
      inherit script trustFile;
      path = "/usr/bin:/bin";
    }}EOS
      chmod 0555 $out/bin/nixship-activate
    ''
  );
  # The command checks it declares, one per line: all a pinned activation runs as root.
  commandLines = map (c:
    if builtins.match ".*[\n\r].*" c.run != null then throw "a command check is one line: ${c.run}" else "${c.run}\n"
  ) (if checks == null then [ ] else checks.commands or [ ]);
  secretLines = builtins.concatStringsSep "" (builtins.attrValues (builtins.mapAttrs
    (secret: s: "${secret} ${s.owner} ${s.group} ${s.mode} ${s.path}\n") secrets));
  # The machine's zstd as nixpkgs' zstd's bin output would hold it; nothing when it has none.
  zstdBin = mk "zstd-${zstd}-bin" ''
    mkdir -p $out/bin
    if [ -x /usr/bin/zstd ]; then cp /usr/bin/zstd $out/bin/zstd; fi
  '';
  etc = mk "example-web-etc-${tag'}" ''
    mkdir -p $out/etc
    cat > $out/etc/example-web.json <<'EOS'
    ${config}
    EOS
    cat > $out/etc/example-web.conf <<'EOS'
    ${configLines}EOS
  '';
in
mk "example-web-system-${tag'}" (''
  mkdir -p $out/bin
  ln -s ${etc}/etc $out/etc
  ln -s ${boot}/bzImage $out/kernel
  ln -s ${boot}/initrd $out/initrd
  ln -s ${boot}/lib $out/kernel-modules
  echo '${name}' > $out/nixos-version
  subst() {
    sed -e "s|@out@|$out|g" -e 's|@share@|${share}|g' -e 's|@name@|${name}|g' \
      -e 's|@start@|${start}|g' -e 's|@kernel@|${kernel}|g' \
      -e 's|@boots@|${if boots then "true" else "false"}|g' "$1" > "$2"
    chmod 0555 "$2"
  }
  subst ${./web/switch-to-configuration.sh} $out/bin/switch-to-configuration
  # What a boot runs (stage 2), and the stand-ins for systemd's reboot and boot assessment
  # that activate.sh calls where NixOS has them.
  subst ${./web/init.sh} $out/init
  mkdir -p $out/sw/bin $out/systemd/lib/systemd
  subst ${./web/systemctl.sh} $out/sw/bin/systemctl
'' + builtins.concatStringsSep "" (builtins.attrValues (builtins.mapAttrs (pname: version: ''
  ln -s ${package pname version}/bin/${pname} $out/sw/bin/${pname}
'') packages)) + (if libraries == { } then "" else "  mkdir -p $out/sw/lib\n")
  + builtins.concatStringsSep "" (builtins.attrValues (builtins.mapAttrs (lname: kib: ''
  ln -s ${library lname kib}/lib/lib${lname}.so $out/sw/lib/lib${lname}.so
'') libraries)) + builtins.concatStringsSep "" (builtins.attrValues (builtins.mapAttrs (pname: text: ''
  ln -s ${program pname text}/bin/${pname} $out/sw/bin/${pname}
'') programs)) + ''
  subst ${./web/systemd-bless-boot.sh} $out/systemd/lib/systemd/systemd-bless-boot
'' + (if zstd == null then "" else ''
  ln -s ${zstdBin}/bin/zstd $out/sw/bin/zstd
'') + (if pinned == null then "" else ''
  ln -s ${activator}/bin/nixship-activate $out/sw/bin/nixship-activate
'') + (if secrets == { } then "" else ''
  mkdir -p $out/nixship
  cat > $out/nixship/secrets <<'EOS'
  ${secretLines}EOS
'') + (if checks == null then "" else ''
  mkdir -p $out/nixship
  cat > $out/nixship/health.json <<'EOS'
  ${builtins.toJSON checks}
  EOS
  cat > $out/nixship/health-commands <<'EOS'
  ${builtins.concatStringsSep "" commandLines}EOS
''))
