# A stand-in for a NixOS system toplevel, built without nixpkgs: a small "etc", a service
# script and a shared library path that it references, so the closure has several paths.
{ system, version }:
let
  mk = name: script: derivation {
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" script ];
    PATH = "/usr/bin:/bin";
  };
  share = mk "example-web-share" ''
    mkdir -p $out/share/www
    echo "<h1>served by nixship example</h1>" > $out/share/www/index.html
  '';
  etc = mk "example-web-etc-v${version}" ''
    mkdir -p $out/etc
    echo "version=${version}" > $out/etc/web.conf
    ln -s ${share}/share/www $out/etc/www
  '';
in
mk "example-web-system-v${version}" ''
  mkdir -p $out/bin
  ln -s ${etc}/etc $out/etc
  echo "web-v${version}" > $out/nixos-version
  cat > $out/bin/web-info <<EOS
  #!/bin/sh
  echo "example web system v${version}; config: $out/etc/web.conf"
  EOS
  chmod +x $out/bin/web-info
''
