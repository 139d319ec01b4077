#!/usr/bin/env bash
# Sets up a fresh Debian machine with Node for nixship: the Debian tools it calls, npm packages, a build,
# and moto's server for the tests (S3, SSM and EC2).
# With --current-nix (the tests need it), also a current Nix beside Debian's (scripts/current-nix.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

current_nix=false
for arg in "$@"; do
  case $arg in
    --current-nix) current_nix=true ;;
    *) echo "setup: unknown option '$arg' (known: --current-nix)" >&2; exit 2 ;;
  esac
done

missing=()
command -v nix >/dev/null 2>&1 || missing+=(nix-bin)
command -v nix-store >/dev/null 2>&1 || missing+=(nix-bin)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)
command -v xz >/dev/null 2>&1 || missing+=(xz-utils)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# Secrets: the age tool, which lab hosts decrypt with and the interop tests run.
command -v age >/dev/null 2>&1 || missing+=(age)
# The dashboard's tests and bench:dashboard drive Debian's Chromium (playwright-core, no download).
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-liberation)
# Pinned hosts: a lab host's deploy user runs nixship-activate through sudo, as on NixOS.
[ -x /usr/bin/sudo ] || missing+=(sudo)
# The agent's systemd unit is checked with systemd-analyze.
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# Flakes in a git repository are evaluated as git+file, which Nix reads with git.
command -v git >/dev/null 2>&1 || missing+=(git)
# The lab: network namespaces and links (iproute2), mount namespaces (util-linux).
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
# test/agent-deltas counts the cache objects an agent's proxy opens with strace.
command -v strace >/dev/null 2>&1 || missing+=(strace)
# The example systems compile their web service (examples/web/server.c) with the machine's cc.
command -v cc >/dev/null 2>&1 || missing+=(gcc)
# The bake tests run a Prometheus of their own (on a free port, a temporary storage directory)
# that scrapes the lab's hosts; the tests start it, so the package's service is kept stopped.
if ! command -v prometheus >/dev/null 2>&1; then
  missing+=(prometheus)
  disable_prometheus=1
fi
# A health check's test over https makes a certificate of its own.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# zstd-napi compiles libzstd at install (node-gyp): a C/C++ toolchain and Python.
command -v make >/dev/null 2>&1 || missing+=(make)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The S3 tests run against moto's server as well as s3rver, and the SSM tests against its SSM and
# EC2: Python's moto, in the machine's python3 or else in a virtualenv of its own that this script
# makes (Debian's python3 takes no pip installs), which needs python3-venv.
moto_venv="${NIXSHIP_MOTO_VENV:-/var/lib/nixship/moto}"
has_moto() { command -v "$1" >/dev/null 2>&1 && "$1" -c 'import moto.server' >/dev/null 2>&1; }
# Which python3 has moto, asked once (an import of moto takes seconds): empty when neither.
moto_python=
if has_moto python3; then
  moto_python=python3
elif has_moto "$moto_venv/bin/python3"; then
  moto_python="$moto_venv/bin/python3"
fi
if [ -z "$moto_python" ]; then
  command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1 ||
    missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  missing=($(printf '%s\n' "${missing[@]}" | sort -u))
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ "${disable_prometheus:-0}" = 1 ]; then
      # The package starts a Prometheus on :9090 where it can; tests start their own.
      systemctl stop prometheus >/dev/null 2>&1 || true
      systemctl disable prometheus >/dev/null 2>&1 || true
    fi
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run this script as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# node-gyp needs Node's headers. A Debian-packaged Node has them under /usr/include/node; point
# node-gyp there so that it never tries to download them.
if [ -z "${npm_config_nodedir:-}" ] && [ -f "$(dirname "$(dirname "$(command -v node)")")/include/node/node_api.h" ]; then
  npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")"
  export npm_config_nodedir
fi

# npm ci only when the lock file (or Node) changed since the last install it made, and the
# build only when a source is newer than the last build: a second run costs seconds.
stamp=node_modules/.nixship-setup
want="$(sha256sum package.json package-lock.json | sha256sum | cut -c1-64) $(node --version)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: npm packages are up to date" >&2
else
  echo "setup: installing npm packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  printf '%s\n' "$want" >"$stamp"
fi
built=dist/.nixship-built
# The build also makes the host script and the SSM document (their scripts count as sources).
if [ -f "$built" ] && [ -f dist/host/activate.sh ] && [ -f dist/ssm-document.json ] &&
  [ -z "$(find src scripts/assemble-activate.mjs scripts/write-ssm-document.mjs tsconfig.json \
    tsconfig.build.json package.json -newer "$built" -print -quit)" ]; then
  echo "setup: the build is up to date" >&2
else
  echo "setup: building" >&2
  npm run --silent build
  touch "$built"
fi
# moto's server, for the S3 and SSM tests: installed from the Python package index where it is missing.
# Without it the setup goes on (nothing else needs it), and the tests that run against it fail,
# saying so.
moto_version='5.2.1'
if [ "$moto_python" = python3 ]; then
  echo "setup: moto's server is installed (moto $(python3 -c 'import moto; print(moto.__version__)'), $(command -v python3))" >&2
elif [ -n "$moto_python" ]; then
  echo "setup: moto's server is installed (moto $("$moto_python" -c 'import moto; print(moto.__version__)'), $moto_venv)" >&2
elif [ "$(id -u)" != 0 ] && [ -z "${NIXSHIP_MOTO_VENV:-}" ]; then
  echo "setup: moto's server is missing, and installing it into $moto_venv needs root; or: pip install 'moto[server]==$moto_version'" >&2
  echo "setup: the S3 and SSM tests that run against moto will fail until it is installed" >&2
else
  echo "setup: installing moto's server (pip install 'moto[server]==$moto_version' into $moto_venv)" >&2
  if python3 -m venv "$moto_venv" &&
    timeout 600 "$moto_venv/bin/pip" install --quiet --disable-pip-version-check --retries 2 --timeout 20 \
      "moto[server]==$moto_version" && has_moto "$moto_venv/bin/python3"; then
    echo "setup: moto's server is installed (moto $moto_version, $moto_venv)" >&2
  else
    echo "setup: could not install moto's server into $moto_venv (is the Python package index reachable? pip says why above)" >&2
    echo "setup: the S3 and SSM tests that run against moto will fail until it is installed: pip install 'moto[server]==$moto_version'" >&2
  fi
fi
if [ "$current_nix" = true ]; then
  bash scripts/current-nix.sh
fi
echo "setup: done; 'node dist/cli/bin.js doctor' checks the local Nix (and with --fleet F, the fleet)" >&2
