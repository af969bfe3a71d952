#!/usr/bin/env bash
# Builds XiuhuaFFI.xcframework for the Swift package in ios/: the Rust static library for
# iOS devices (aarch64-apple-ios) and the simulators (aarch64-apple-ios-sim,
# x86_64-apple-ios, merged with lipo), with the C header and module map that uniffi
# generates; and the generated Swift bindings into ios/Sources/XiuhuaFFI/.
#
# Needs macOS with Xcode (xcodebuild, lipo), perl and make (OpenSSL is built from source for
# SQLCipher). NOT run on the CI machine (Linux, no Xcode); scripts/swift-tests.sh compiles
# and tests the non-UI targets there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[ "$(uname)" = Darwin ] || { echo "error: building an XCFramework needs macOS and Xcode" >&2; exit 1; }

TARGETS=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
rustup target add "${TARGETS[@]}"
export IPHONEOS_DEPLOYMENT_TARGET=15.0
for t in "${TARGETS[@]}"; do
  cargo build --locked --release --target "$t" -p xiuhua-ffi --lib --no-default-features --features vendored-openssl
done

# The bindings, from a host build of the library (library mode).
cargo build --locked -p xiuhua-ffi --lib --bin uniffi-bindgen
GEN=$ROOT/ios/build/generated
rm -rf "$GEN"
"$TARGET/debug/uniffi-bindgen" generate --library "$TARGET/debug/libxiuhua_ffi.dylib" \
  --language swift --out-dir "$GEN"
mkdir -p "$ROOT/ios/Sources/XiuhuaFFI"
cp "$GEN/XiuhuaFFI.swift" "$ROOT/ios/Sources/XiuhuaFFI/XiuhuaFFI.swift"

# Headers + module map for the C module the Swift bindings import (xiuhua_ffiFFI).
HEADERS=$ROOT/ios/build/headers
rm -rf "$HEADERS"
mkdir -p "$HEADERS"
cp "$GEN/xiuhua_ffiFFI.h" "$HEADERS/"
cp "$GEN/xiuhua_ffiFFI.modulemap" "$HEADERS/module.modulemap"

SIM=$ROOT/ios/build/sim
mkdir -p "$SIM"
lipo -create "$TARGET/aarch64-apple-ios-sim/release/libxiuhua_ffi.a" \
  "$TARGET/x86_64-apple-ios/release/libxiuhua_ffi.a" -output "$SIM/libxiuhua_ffi.a"

OUT=$ROOT/ios/XiuhuaFFI.xcframework
rm -rf "$OUT"
xcodebuild -create-xcframework \
  -library "$TARGET/aarch64-apple-ios/release/libxiuhua_ffi.a" -headers "$HEADERS" \
  -library "$SIM/libxiuhua_ffi.a" -headers "$HEADERS" \
  -output "$OUT"
echo "built $OUT"
