#!/usr/bin/env bash
# The README's test command: set everything up, then run lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --current-nix
npm test
