#!/usr/bin/env bash
# The README's demo command: set everything up, then show the binary cache end to end.
# Build an example system with the local Nix, make a signing key, push the closure into a
# local cache, serve it over HTTP, and have stock Nix substitute it into a separate store
# with signatures required and only our key trusted.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# Never reach out to a public substituter; no build users needed for this local demo. Nix's
# narinfo cache is off so that the tampering step below is judged on what the server serves.
export NIX_CONFIG=$'experimental-features = nix-command flakes\nbuild-users-group =\nsubstituters =\nnarinfo-cache-positive-ttl = 0\nnarinfo-cache-negative-ttl = 0'
nixship() { node dist/cli/bin.js "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

demo=.nixship-demo
rm -rf "$demo"
mkdir -p "$demo"
server_pid=
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true; }
trap cleanup EXIT

step "Build the example system with the local Nix"
system=$(nix build --no-link --json "path:$PWD/examples#web-v1" |
  node -e 'console.log(JSON.parse(require("fs").readFileSync(0, "utf8"))[0].outputs.out)')
echo "$system"
nix path-info --recursive --size "$system"

step "Generate a signing key"
public_key=$(nixship key generate --name demo-cache-1 --out "$demo/cache.sec")
echo "public key: $public_key"

step "Push the closure, signed, into a local cache"
nixship push "$system" --to "file://$PWD/$demo/cache" --key "$demo/cache.sec"
find "$demo/cache" -type f | sort

step "Serve the cache over HTTP"
node dist/cli/bin.js cache serve "file://$PWD/$demo/cache" --listen 127.0.0.1:0 >"$demo/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 50); do grep -q "listening on" "$demo/serve.log" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$demo/serve.log")
[ -n "$url" ] || { cat "$demo/serve.log"; exit 1; }
echo "serving at $url"

step "Nix substitutes the system from it into a separate store (require-sigs, only our key trusted)"
nix copy --from "$url" --store "$PWD/$demo/store" \
  --option require-sigs true --option trusted-public-keys "$public_key" "$system"
nix path-info --store "$PWD/$demo/store" --recursive --json "$system" |
  node -e 'for (const p of JSON.parse(require("fs").readFileSync(0, "utf8"))) console.log(p.path, p.narHash, (p.signatures ?? []).join(" "))'

step "Verify the whole cache"
nixship verify --cache "file://$PWD/$demo/cache" --trusted-key "$public_key"

step "Tamper with a narinfo: Nix and nixship both refuse it"
narinfo=$(ls "$demo"/cache/*.narinfo | head -n 1)
sed -i 's/^NarSize: \([0-9]*\)/NarSize: 1\1/' "$narinfo"
if nixship verify --cache "file://$PWD/$demo/cache" --trusted-key "$public_key"; then
  echo "tampering was NOT detected by nixship" >&2
  exit 1
fi
if nix copy --from "$url" --store "$PWD/$demo/store-after-tamper" \
  --option require-sigs true --option trusted-public-keys "$public_key" "$system"; then
  echo "tampering was NOT detected by Nix" >&2
  exit 1
fi
echo "demo finished: the cache works with stock Nix, and tampering is caught"
