#!/usr/bin/env bash
# How the host's delta step reads its bases' NARs, for N store paths (default 300) of its own:
# one `nix-store --dump` per base (as activate.sh did), against one `nix-store --dump-db` and one
# `nix-store --export` cut by the sizes it gives (as 26-deltas.sh does now, with its own
# EXPORT_META_AWK: the part is assembled as the build does it). Runs the Nix on the
# PATH against the machine's store; the paths are new files of this run, left to the collector.
# Usage: bash bench/delta-base-reads.sh [N]
#   With the current Nix: NIX_CURRENT=/var/lib/nixship/nix-current bash bench/delta-base-reads.sh
#   (runs itself again in a private mount namespace whose /nix is a new directory).
set -euo pipefail
n=${1:-300}
if [ -n "${NIX_CURRENT:-}" ] && [ -z "${NIX_CURRENT_INSIDE:-}" ]; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  # shellcheck disable=SC2016 # expanded by that sh
  NIX_CURRENT_INSIDE=1 unshare --mount sh -c 'mount --bind "$1" /nix && PATH="$2/bin:$PATH" exec bash "$3" "$4"' \
    sh "$root" "$NIX_CURRENT" "$0" "$n"
  exit
fi
export NIX_CONFIG="experimental-features = nix-command flakes
build-users-group =
sandbox = false"
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node "$root/scripts/assemble-activate.mjs" --part 26-deltas.sh --out "$work/26-deltas.sh"
# shellcheck disable=SC1091 # assembled just above: definitions only
. "$work/26-deltas.sh"
cd "$work"
for i in $(seq 1 "$n"); do
  mkdir -p "src/p$i/lib"
  head -c $((20000 + i * 37)) /dev/urandom >"src/p$i/lib/libp$i.so"
  echo "file $i" >"src/p$i/README"
done
paths=$(for i in $(seq 1 "$n"); do nix-store --add "src/p$i"; done | LC_ALL=C sort)
# shellcheck disable=SC2086 # one store path a word
set -- $paths
echo "$(nix --version), $# store paths of $(du -sh src | cut -f 1), load $(cut -d ' ' -f 1 /proc/loadavg)"
clock() { date +%s.%N; }
t0=$(clock)
for p in "$@"; do nix-store --dump "$p" >base.nar; done
t1=$(clock)
nix-store --dump-db "$@" >registration
LC_ALL=C awk "$EXPORT_META_AWK"'{ registration() }
END { for (q in size) print q, size[q], meta[q] }' registration | LC_ALL=C sort >sizes
nix-store --export "$@" | (
  exec 4<&0 </dev/null
  head -c 8 <&4 >/dev/null
  while read -r p s m; do
    head -c "$s" <&4 >base.nar
    head -c "$m" <&4 >/dev/null
  done <sizes
  cat <&4 >/dev/null
)
t2=$(clock)
last=$(tail -n 1 sizes | cut -d ' ' -f 1)
nix-store --dump "$last" | cmp -s - base.nar || { echo "the export's cut differs from the dump" >&2; exit 1; }
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$#" 'BEGIN {
  printf "one nix-store --dump a base: %.2f s (%.1f ms a base)\n", b - a, (b - a) * 1000 / n
  printf "one --dump-db and one --export, cut: %.2f s (%.1f ms a base); %.1fx faster\n", c - b, (c - b) * 1000 / n, (b - a) / (c - b)
}'
