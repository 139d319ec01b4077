#!/usr/bin/env bash
# Makes a current Nix beside Debian's 2.8: Debian trixie's nix-bin in a root of its own (made
# with debootstrap), run through trixie's own loader and libraries by wrappers in DIR/bin.
# It never touches the machine's /nix: a newer Nix migrates a store's database, so whoever
# runs it gives it a /nix of its own (the tests bind one in a mount namespace; the lab's
# hosts have theirs). A second run costs nothing.
#
#   bash scripts/current-nix.sh [DIR]     default DIR: /var/lib/nixship/nix-current
#   DIR/bin/nix --version                 the wrapped Nix (nix-store, nix-env, ... beside it)
set -euo pipefail

dir="${1:-${NIXSHIP_CURRENT_NIX_DIR:-/var/lib/nixship/nix-current}}"
root="$dir/root"
bin="$dir/bin"
suite=trixie
stamp="$dir/.ready"
want="nix-current 2 $suite"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$bin/nix" ]; then
  echo "current-nix: $("$bin/nix" --version) is ready in $dir" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "current-nix: making $dir needs root (debootstrap, chroot)" >&2
  exit 1
fi

# The root: trixie with nix-bin, made once (its own stamp, so that new wrappers do not remake it).
if [ "$(cat "$root/.nixship-root" 2>/dev/null)" != "$suite nix-bin" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "current-nix: installing debootstrap" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  # The mirror the machine's own apt uses, so that nothing else is contacted.
  mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)\/* *$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  rm -rf "$dir"
  mkdir -p "$dir.partial"
  echo "current-nix: debootstrap --variant=minbase $suite from $mirror (a few minutes)" >&2
  debootstrap --variant=minbase "$suite" "$dir.partial/root" "$mirror" >"$dir.partial/debootstrap.log" 2>&1 || {
    tail -n 20 "$dir.partial/debootstrap.log" >&2
    exit 1
  }
  echo "current-nix: installing nix-bin in the $suite root" >&2
  chroot "$dir.partial/root" /usr/bin/env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends nix-bin >"$dir.partial/apt.log" 2>&1 || {
    tail -n 20 "$dir.partial/apt.log" >&2
    exit 1
  }
  # The root's own /nix (made by nix-bin's scripts) is never used: runs bind a store of their own.
  rm -rf "$dir.partial/root/nix"
  printf '%s\n' "$suite nix-bin" >"$dir.partial/root/.nixship-root"
  mv "$dir.partial" "$dir"
fi

rm -rf "$dir.partial"
mkdir -p "$dir.partial"
mkdir -p "$dir.partial/bin"
# The wrapper runs trixie's nix with trixie's loader and libraries. The loader takes the name
# Nix dispatches on (nix-store, nix-env, ...) from --argv0: each command is a link to it. Nix
# starts its build hook as its own executable (/proc/self/exe), which is the loader here: the
# hook is named as this wrapper instead.
cat >"$dir.partial/bin/nix" <<EOF
#!/bin/sh
# Debian $suite's Nix, run with its own loader and libraries (made by nixship's scripts/current-nix.sh).
root='$root'
NIX_CONFIG="\${NIX_CONFIG:+\$NIX_CONFIG
}build-hook = $bin/nix __build-remote"
export NIX_CONFIG
exec "\$root/lib64/ld-linux-x86-64.so.2" --library-path "\$root/usr/lib/x86_64-linux-gnu" \\
  --argv0 "\${0##*/}" "\$root/usr/bin/nix" "\$@"
EOF
chmod 755 "$dir.partial/bin/nix"
for cmd in nix-build nix-channel nix-collect-garbage nix-copy-closure nix-daemon nix-env nix-hash \
  nix-instantiate nix-prefetch-url nix-shell nix-store; do
  ln -s nix "$dir.partial/bin/$cmd"
done

rm -rf "$bin"
mv "$dir.partial/bin" "$bin"
rm -rf "$dir.partial"
version=$("$bin/nix" --version)
printf '%s\n' "$want" >"$stamp"
echo "current-nix: $version is ready in $dir" >&2
