#!/usr/bin/env bash
# The README's test command: set everything up, then run lint, type checks and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# Installs what is missing and builds when a source is newer than the last build; the build's
# tsc has type-checked src/ and the dashboard's client, so neither is built nor checked again.
bash scripts/setup.sh --current-nix
npm run --silent lint
# src/ once more with what only this config takes in: the tests, their support and the benches.
npx tsc -p tsconfig.json --noEmit
# The time each file took is printed after the run, slowest first (test/support/file-times-reporter.ts).
npx vitest run
