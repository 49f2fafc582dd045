#!/usr/bin/env bash
# perfsync's main job on its embedded default, end to end on this machine: the examples become
# a git repository served on loopback, a demo HTTP target starts on loopback, `perfsync serve`
# runs with the local executor, a change is pushed and announced by a GitHub-format webhook,
# and the run, its verdict and where the results went are shown. Only loopback is load-tested.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bash scripts/setup.sh
echo "== building perfsync (release)"
cargo build --release --quiet
bin="$root/target/release/perfsync"

work=$(mktemp -d /tmp/perfsync-demo.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
git_port=$(free_port); api_port=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
export GIT_AUTHOR_NAME="Demo User" GIT_AUTHOR_EMAIL="demo@example.com" GIT_COMMITTER_NAME="Demo User" GIT_COMMITTER_EMAIL="demo@example.com"

echo "== examples/ as a git repository on git://127.0.0.1:$git_port/examples.git"
git init -q --bare -b main "$work/remote/examples.git"
git init -q -b main "$work/checkout"
cp -r examples/tests examples/templates "$work/checkout/"
git -C "$work/checkout" add -A
git -C "$work/checkout" commit -qm "Load tests"
git -C "$work/checkout" push -q "$work/remote/examples.git" HEAD:main
git daemon --reuseaddr --export-all --enable=receive-pack --listen=127.0.0.1 --port="$git_port" \
  --base-path="$work/remote" "$work/remote" >/dev/null 2>&1 &
pids+=($!)

echo "== demo HTTP target on http://127.0.0.1:18080"
"$bin" demo-target --listen 127.0.0.1:18080 >"$work/target.log" 2>&1 &
pids+=($!)

schema=perfsync_demo
psql -q -h 127.0.0.1 -U postgres -d test -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema;" >/dev/null
export PERFSYNC_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D$schema"
export DEMO_HOOK_SECRET="demo-webhook-secret" DEMO_API_TOKEN="demo-api-token"
sed -e "s#url: ./examples#url: git://127.0.0.1:$git_port/examples.git#" examples/local.yaml > "$work/perfsync.yaml"
cat >> "$work/perfsync.yaml" <<YAML
stateDir: $work/state
server:
  listen: 127.0.0.1:$api_port
  apiToken: {env: DEMO_API_TOKEN}
webhooks:
  github: {env: DEMO_HOOK_SECRET}
sync:
  pollInterval: 0s
results:
  authorName: perfsync
  authorEmail: perfsync@example.com
YAML

echo "== perfsync serve (log: $work/perfsync.log)"
"$bin" serve --config "$work/perfsync.yaml" >"$work/perfsync.log" 2>&1 &
pids+=($!)
api() { curl -fsS -H "Authorization: Bearer $DEMO_API_TOKEN" "http://127.0.0.1:$api_port$1"; }
for _ in $(seq 1 100); do
  commit=$(api /api/v1/status 2>/dev/null | python3 -c 'import json,sys; print((json.load(sys.stdin).get("sync") or {}).get("lastCommit") or "")' 2>/dev/null || true)
  [ -n "$commit" ] && break
  sleep 0.2
done
echo "   first sync recorded the baseline at ${commit:0:12}; nothing runs on a first sync"

echo "== a merge request changes orders-load (8 → 6 VUs); pushing it"
sed -i 's/VUS: "8"/VUS: "6"/' "$work/checkout/tests/templated/orders-load/perftest.yaml"
git -C "$work/checkout" commit -qam "orders-load: 6 VUs"
git -C "$work/checkout" push -q "$work/remote/examples.git" HEAD:main
head=$(git -C "$work/checkout" rev-parse HEAD)

echo "== GitHub push webhook for $head"
body="{\"ref\":\"refs/heads/main\",\"after\":\"$head\",\"repository\":{\"full_name\":\"demo/load-tests\"}}"
sig=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$DEMO_HOOK_SECRET" "$body")
curl -fsS -X POST -H "X-GitHub-Event: push" -H "X-Hub-Signature-256: sha256=$sig" -H "Content-Type: application/json" \
  --data "$body" "http://127.0.0.1:$api_port/hooks/github"; echo

echo "== the run (refreshing every 2 s)"
status=""
for _ in $(seq 1 60); do
  line=$(api "/api/v1/runs?test=orders-load&limit=1" | python3 -c 'import json,sys
r=json.load(sys.stdin)
print(r[0]["id"] + " " + r[0]["status"] if r else "")' || true)
  status=${line##* }
  echo "   ${line:-waiting for the sync to plan it}"
  case "$status" in succeeded|failed|error|timeout|aborted) break;; esac
  sleep 2
done
run=${line%% *}

echo
echo "== verdict: $status"
"$bin" runs show "$run" | sed -n '1,20p'
echo
echo "== recent runs (perfsync runs list)"
"$bin" runs list --limit 5
echo
echo "== the results commit on the remote"
for _ in $(seq 1 20); do
  git -C "$work/remote/examples.git" log -1 --format='%h %an: %s' main | grep -q perfsync && break
  sleep 0.5
done
git -C "$work/remote/examples.git" log -1 --stat --format='%h %an: %s' main
echo
echo "== status page: http://127.0.0.1:$api_port/   (run page: http://127.0.0.1:$api_port/runs/$run)"
if [ -t 0 ]; then
  echo "   press Enter to stop the demo"
  read -r _
fi
[ "$status" = "succeeded" ] || [ "$status" = "failed" ]
