#!/usr/bin/env bash
# The README's demo command: set everything up, then a real deployment on the local lab.
# Three hosts (network namespaces with their own /nix and a real sshd), the example systems
# built once, pushed signed into a cache that the hosts substitute from, a canary and waves,
# health checks, a broken release caught and rolled back, and a manual rollback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ "$(id -u)" != 0 ]; then
  echo "demo: the lab needs root (network and mount namespaces); run: sudo bash scripts/demo.sh" >&2
  exit 1
fi

# The settings the demo's builds need of a Nix with no nix.conf (Debian's, fresh): the new CLI,
# no build users, no sandbox (the example systems build with the machine's /bin/sh and cc), and
# never a public substituter. Any NIX_CONFIG of the caller's comes first, overridden by these.
export NIX_CONFIG="${NIX_CONFIG:+$NIX_CONFIG
}experimental-features = nix-command flakes
build-users-group =
sandbox = false
substituters ="
demo=$PWD/.nixship-demo
export NIXSHIP_LAB_DIR=$demo/labs
nixship() { node "$PWD/dist/cli/bin.js" "$@"; }
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# Every process the demo starts ends with it, but the lab, which it leaves up (and says so).
dashboard=
stop_dashboard() {
  if [ -n "$dashboard" ]; then
    kill "$dashboard" 2>/dev/null || true
    wait "$dashboard" 2>/dev/null || true
    dashboard=
  fi
}
cleanup() {
  stop_dashboard
  nixship lab down --name demo >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
rm -rf "$demo"
mkdir -p "$demo"

step "Start a lab of 3 hosts: each its own network namespace, empty /nix and a real sshd"
nixship lab up 3 --name demo
lab=$NIXSHIP_LAB_DIR/demo
# The fleet in Nix: the lab wrote it beside its fleet file, a flake whose `nixship` output names
# each host's system (one of nixship's example systems) and how it is reached.
flake=$lab/fleet/flake.nix
fleet=path:$lab/fleet#nixship
gateway=$(nixship lab address --name demo)
deploy() { nixship deploy --fleet "$fleet" --key "$lab/cache.sec" --serve-cache "$gateway:0" "$@"; }
set_system() { # set_system SYSTEM HOST...: edit the flake, as you would, to give hosts a system
  node -e '
    const fs = require("fs"); const [file, system, ...hosts] = process.argv.slice(1);
    let text = fs.readFileSync(file, "utf8");
    for (const h of hosts) {
      const entry = new RegExp("(\\n\\s*" + h + " = \\{[^}]*?system = systems\\.)[A-Za-z0-9-]+;");
      if (!entry.test(text)) { console.error("demo: no system line for " + h + " in " + file); process.exit(1); }
      text = text.replace(entry, "$1" + system + ";");
    }
    fs.writeFileSync(file, text);' "$flake" "$@"
  for h in "${@:2}"; do printf '  %s: %s\n' "$h" "$(grep -A6 "^ *$h = {" "$flake" | grep -m1 -o "system = .*")"; done
}
show() { for h in demo1 demo2 demo3; do printf '%s serves: ' "$h"; curl -s --max-time 5 "http://$(node -e 'const l=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(l.hosts.find(h=>h.name===process.argv[2]).address)' "$lab/lab.json" "$h")/version"; done; }
echo "the fleet, in Nix: $flake"

step "Deploy web-v1 to every host (build once, push signed, hosts substitute from the cache)"
deploy
show

step "Plan web-v2 for the hosts tagged @web only"
set_system web-v2 demo1 demo3
nixship plan --fleet "$fleet" --on @web
echo "(no deltas here: these example systems carry no zstd for a host to apply them with, as a"
echo " NixOS system does; docs/deltas.md deploys web-deltas-v1, then -v2, which get them)"

step "Deploy it: canary first, then the rest"
deploy --on @web
show

step "A broken release (its health check fails): the canary rolls back, the rest is not touched"
set_system web-broken demo1 demo3
if deploy --on @web --max-failures 0; then
  echo "demo: the broken release was NOT caught" >&2
  exit 1
fi
show

step "Roll demo3 back by hand to its previous generation, and ask the fleet what it runs"
nixship rollback --fleet "$fleet" --on demo3
# status exits 1 unless every host is in step, and demo1 is not: its last deploy went back.
nixship status --fleet "$fleet" || echo "(status exits $?: demo1's last deploy failed and went back)"

step "The dashboard over the same store (hosts, releases, the last rollout wave by wave): its /metrics"
# node itself in the background (not the nixship function, whose subshell is not the server),
# so that $! is the process to stop.
node "$PWD/dist/cli/bin.js" dashboard --fleet "$fleet" --listen 127.0.0.1:0 2> "$demo/dashboard.log" &
dashboard=$!
for _ in $(seq 1 300); do grep -q "^listening on" "$demo/dashboard.log" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$demo/dashboard.log")
if [ -z "$url" ]; then
  echo "demo: the dashboard did not start:" >&2
  cat "$demo/dashboard.log" >&2
  exit 1
fi
curl -s --max-time 10 "$url/metrics" | grep -E '^nixship_(hosts\{|hosts_drifting|rollout_state)' | grep -v ' 0$'
stop_dashboard

# The lab stays up for the dashboard: only a failed demo takes it down here.
trap - EXIT
echo
echo "demo finished: a real deployment on the local lab, with health checks and rollback"
echo
echo "Look at it in a browser (hosts, releases, the last rollout, live as it changes):"
echo "  NIXSHIP_LAB_DIR=$NIXSHIP_LAB_DIR node $PWD/dist/cli/bin.js dashboard --fleet $fleet --open"
echo "and open http://127.0.0.1:7300. The lab stays up until:"
echo "  NIXSHIP_LAB_DIR=$NIXSHIP_LAB_DIR node $PWD/dist/cli/bin.js lab down --name demo"
echo
echo "To deploy changes yourself (the lab's fleet is $NIXSHIP_LAB_DIR/demo/fleet/flake.nix), give"
echo "Nix the settings this demo gave it for its own commands (README, step 2), or in this shell:"
echo "  export NIX_CONFIG=\$'experimental-features = nix-command flakes\\nbuild-users-group =\\nsandbox = false\\nsubstituters ='"
echo "('nixship doctor' lists every setting this machine's Nix lacks)."
