#!/usr/bin/env bash
# Swift tests on Linux: compiles the Swift package's non-UI targets (the generated bindings
# XiuhuaFFI and the repository layer Xiuhua; SwiftUI does not exist on Linux, so XiuhuaUI is
# not compiled here) against the real Rust library and runs the XCTest suite in
# ios/Tests/XiuhuaTests, including syncs with the real xiuhua-server on loopback.
#
# The Swift toolchain is Debian trixie's `swiftlang` (Swift 6.0, Foundation, XCTest), in a
# trixie chroot kept OUTSIDE the repository and reused when present:
#   $XIUHUA_SWIFT_CHROOT (default /var/cache/xiuhua-swift-chroot).
# A cold run creates it (debootstrap --variant=minbase, then apt-get install swiftlang
# libc6-dev inside: about 565 MB downloaded, 2.6 GB on disk, a few minutes); a warm run
# only copies the sources in and compiles. Needs root (chroot, mount) or sudo.
#
# The package is assembled in the chroot at /xiuhua from ios/Package.swift (its Linux
# branch), ios/Sources/Xiuhua, ios/Tests and the bindings generated here (library mode, not
# committed); its .build folder stays there between runs.
#
# Usage: scripts/swift-tests.sh [--prepare] [XCTEST-FILTER]
#   --prepare   only create (or check) the chroot
#   FILTER      passed to `swift test --filter` (e.g. XiuhuaTests.SyncTests)
# Environment: XIUHUA_SWIFT_CHROOT, XIUHUA_DEBIAN_MIRROR (default: this machine's Debian
# mirror from /etc/apt, else http://deb.debian.org/debian), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CHROOT=${XIUHUA_SWIFT_CHROOT:-/var/cache/xiuhua-swift-chroot}
SUITE=trixie
READY=$CHROOT/.xiuhua-swift-ready # written once swiftlang is installed
PKG=/xiuhua                       # the package inside the chroot

log() { printf '\n== swift: %s\n' "$*"; }
die() { printf 'swift-tests: error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

prepare_only=0
filter=()
for a in "$@"; do
  case "$a" in
    --prepare) prepare_only=1 ;;
    -*) die "unknown option $a" ;;
    *) filter=(--filter "$a") ;;
  esac
done

[ "$(uname)" = Linux ] || die "this script runs the Swift tests on Linux (on macOS use Xcode)"
case "$CHROOT" in
  /|"$ROOT"|"$ROOT"/*) die "XIUHUA_SWIFT_CHROOT must be outside the repository and not /" ;;
esac

# --- mounts: /proc while we work in the chroot, always unmounted on exit ---
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    as_root umount "${mounted[$i]}" 2>/dev/null || as_root umount -l "${mounted[$i]}" 2>/dev/null || true
  done
  mounted=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mount_proc() { # DIR
  if ! mountpoint -q "$1/proc"; then
    as_root mount -t proc proc "$1/proc"
    mounted+=("$1/proc")
  fi
}
# Nothing may be mounted below a folder about to be deleted (a leftover from a killed run).
unmount_below() { # DIR
  local m
  while read -r m; do
    as_root umount "$m" 2>/dev/null || as_root umount -l "$m"
  done < <(awk -v d="$1/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
}

debian_mirror() {
  if [ -n "${XIUHUA_DEBIAN_MIRROR:-}" ]; then echo "$XIUHUA_DEBIAN_MIRROR"; return; fi
  local m
  # deb822 (.sources) and one-line (.list) formats; the first non-security Debian archive.
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' \
      | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
  if [ -z "$m" ]; then
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' \
        | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

ensure_chroot() {
  # (/usr/bin/swift is an absolute symbolic link: test it from inside.)
  if [ -f "$READY" ] && as_root chroot "$CHROOT" test -x /usr/bin/swift; then
    log "reusing the $SUITE chroot at $CHROOT ($(cat "$READY"))"
    return
  fi
  local started=$SECONDS part=$CHROOT.partial mirror
  mirror=$(debian_mirror)
  log "creating a $SUITE chroot with swiftlang at $CHROOT (mirror $mirror)"
  if ! command -v debootstrap >/dev/null || [ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    as_root apt-get update -qq
    as_root apt-get install -y -qq debootstrap debian-archive-keyring
  fi
  [ -e "$CHROOT" ] && { unmount_below "$CHROOT"; as_root rm -rf "$CHROOT"; }
  [ -e "$part" ] && { unmount_below "$part"; as_root rm -rf "$part"; }
  as_root mkdir -p "$(dirname "$CHROOT")"
  as_root debootstrap --variant=minbase \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg "$SUITE" "$part" "$mirror" \
    || die "debootstrap failed (see $part/debootstrap/debootstrap.log)"
  as_root cp /etc/resolv.conf "$part/etc/resolv.conf" 2>/dev/null || true
  mount_proc "$part"
  # libc6-dev must be named: without it Foundation does not import (no glibc headers).
  as_root chroot "$part" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 \
    sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends swiftlang libc6-dev ca-certificates && apt-get clean' \
    || die "apt-get install swiftlang in the chroot failed"
  # swift finds its libraries relative to /proc/self/exe: /proc is still mounted here.
  as_root chroot "$part" swift --version >/dev/null || die "swift does not run in the chroot"
  as_root sh -c "chroot '$part' swift --version 2>&1 | head -n1 > '$part/.xiuhua-swift-ready'"
  cleanup
  as_root mv "$part" "$CHROOT"
  log "chroot ready in $((SECONDS - started)) s: $(cat "$READY")"
}

ensure_chroot
[ $prepare_only = 1 ] && exit 0

# --- the Rust library, the server, the bindings ---
log "building the cdylib, uniffi-bindgen and xiuhua-server"
cargo build --locked -p xiuhua-ffi --lib --bin uniffi-bindgen
cargo build --locked -p xiuhua-server --bin xiuhua-server
LIB=$TARGET/debug/libxiuhua_ffi.so
SERVER=$TARGET/debug/xiuhua-server
GEN=$TARGET/swift-bindings
log "generating Swift bindings (library mode) into ${GEN#"$ROOT"/}"
rm -rf "$GEN"
"$TARGET/debug/uniffi-bindgen" generate --library "$LIB" --language swift --out-dir "$GEN"
for f in XiuhuaFFI.swift xiuhua_ffiFFI.h xiuhua_ffiFFI.modulemap; do
  [ -f "$GEN/$f" ] || die "uniffi-bindgen did not write $f"
done

# --- assemble the package inside the chroot (its .build stays for the next run) ---
DEST=$CHROOT$PKG
log "copying the package into the chroot at $PKG"
as_root mkdir -p "$DEST"
# Files are replaced only when their content changed, so that SwiftPM's incremental build
# (which looks at modification times) recompiles only what changed; the committed sources
# are copied with their times.
put() { # SRC DEST-FILE
  cmp -s "$1" "$2" 2>/dev/null || as_root cp "$1" "$2"
}
as_root rm -rf "$DEST/Sources/Xiuhua" "$DEST/Tests"
as_root mkdir -p "$DEST/Sources/XiuhuaFFI" "$DEST/Sources/xiuhua_ffiFFI" "$DEST/lib"
as_root cp -p "$ROOT/ios/Package.swift" "$DEST/"
as_root cp -p "$ROOT/ios/Sources/XiuhuaFFI/README.md" "$DEST/Sources/XiuhuaFFI/"
as_root cp -rp "$ROOT/ios/Sources/Xiuhua" "$DEST/Sources/"
as_root cp -rp "$ROOT/ios/Tests" "$DEST/"
put "$GEN/XiuhuaFFI.swift" "$DEST/Sources/XiuhuaFFI/XiuhuaFFI.swift"
# The C module the bindings import, as a system-library target (ios/Package.swift, Linux).
put "$GEN/xiuhua_ffiFFI.h" "$DEST/Sources/xiuhua_ffiFFI/xiuhua_ffiFFI.h"
put "$GEN/xiuhua_ffiFFI.modulemap" "$DEST/Sources/xiuhua_ffiFFI/module.modulemap"
put "$LIB" "$DEST/lib/libxiuhua_ffi.so"
put "$SERVER" "$DEST/lib/xiuhua-server"

# --- compile and test ---
mount_proc "$CHROOT"
in_chroot() { # CMD… run in the package folder, as root, with a clean environment
  as_root chroot "$CHROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root \
    LC_ALL=C.UTF-8 TMPDIR=/tmp XIUHUA_SERVER_BIN="$PKG/lib/xiuhua-server" \
    sh -c 'cd "$0" && exec "$@"' "$PKG" "$@"
}
flags=(-Xlinker "-L$PKG/lib" -Xlinker "-rpath=$PKG/lib")
started=$SECONDS
log "swift build (strict concurrency: complete)"
if ! in_chroot swift build --build-tests "${flags[@]}" -Xswiftc -strict-concurrency=complete 2>&1 | tee "$TARGET/swift-build.log"; then
  die "swift build failed (above; log in ${TARGET#"$ROOT"/}/swift-build.log)"
fi
# Warnings in our own sources (not the generated bindings) fail the run: the strict
# concurrency checks only warn in Swift 5 mode.
if grep -E '^/xiuhua/(Sources/Xiuhua|Tests)/[^:]+:[0-9]+:[0-9]+: warning:' "$TARGET/swift-build.log"; then
  die "warnings in ios/Sources/Xiuhua or ios/Tests (above)"
fi
log "compiled in $((SECONDS - started)) s; swift test"
in_chroot swift test --skip-build "${flags[@]}" "${filter[@]}" || die "swift test failed (above)"
log "swift tests passed in $((SECONDS - started)) s"
