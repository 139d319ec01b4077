#!/usr/bin/env bash
# The README's test command: set everything up, then run lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The committed host script must be the assembly of its parts: checked before the setup's build
# assembles it again (which would hide a stale one).
node scripts/assemble-activate.mjs --check
bash scripts/setup.sh --current-nix
npm test
