#!/usr/bin/env bash
# The test command: set up what is missing, then run every test with nextest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo nextest run --no-fail-fast "$@"
