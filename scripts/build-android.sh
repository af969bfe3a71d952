#!/usr/bin/env bash
# Builds the Android library (AAR): the Rust library for arm64-v8a, armeabi-v7a and x86_64
# with cargo-ndk into android/xiuhua-android/src/main/jniLibs, then the AAR with Gradle
# (which also generates the Kotlin bindings from a host build, in library mode).
#
# Needs the Android SDK and NDK (ANDROID_NDK_HOME, or ANDROID_HOME with an ndk/ folder),
# Gradle (android/gradlew, or gradle on PATH), perl and make (OpenSSL is built from source
# for SQLCipher). NOT run on the CI machine, which has no Android SDK.
# Usage: scripts/build-android.sh [--debug] [--apk]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=release
GRADLE_TASKS=(:xiuhua-android:assembleRelease)
for a in "$@"; do
  case "$a" in
    --debug) PROFILE=debug ;;
    --apk) GRADLE_TASKS+=(:app:assembleRelease) ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

if [ -z "${ANDROID_NDK_HOME:-}" ] && [ -n "${ANDROID_HOME:-}" ] && [ -d "$ANDROID_HOME/ndk" ]; then
  ANDROID_NDK_HOME=$(find "$ANDROID_HOME/ndk" -mindepth 1 -maxdepth 1 -type d | sort -V | tail -1)
  export ANDROID_NDK_HOME
fi
[ -n "${ANDROID_NDK_HOME:-}" ] && [ -d "$ANDROID_NDK_HOME" ] || {
  echo "error: set ANDROID_NDK_HOME (or ANDROID_HOME with the NDK installed)" >&2; exit 1; }

command -v cargo-ndk >/dev/null || cargo install --locked cargo-ndk
rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android

JNI=$ROOT/android/xiuhua-android/src/main/jniLibs
rm -rf "$JNI"
release_flag=(); [ "$PROFILE" = release ] && release_flag=(--release)
# minSdk 26, as in android/*/build.gradle.kts.
cargo ndk --platform 26 -t arm64-v8a -t armeabi-v7a -t x86_64 -o "$JNI" \
  build --locked "${release_flag[@]}" -p xiuhua-ffi --lib --no-default-features --features vendored-openssl
find "$JNI" -name '*.so' -print

cd android
if [ -x ./gradlew ]; then GRADLE=./gradlew; else GRADLE=gradle; fi
"$GRADLE" "${GRADLE_TASKS[@]}"
ls -l xiuhua-android/build/outputs/aar/
