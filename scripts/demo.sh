#!/usr/bin/env bash
# perfsync's main job on its embedded default: the examples under examples/ with the local
# executor's config. Validates every test against the policy and shows what would run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
bin=target/release/perfsync
echo "== perfsync validate --config examples/local.yaml examples"
"$bin" validate --config examples/local.yaml examples
echo
echo "== perfsync render --config examples/local.yaml examples user-journey (first lines)"
"$bin" render --config examples/local.yaml examples user-journey | sed -n '1,12p'
