#!/usr/bin/env bash
# Kotlin tests on a desktop JVM against the real Rust library (through JNA), including a
# sync with the real xiuhua-server on loopback. Installs what it needs when missing:
#   - the Kotlin compiler from the npm registry (package kotlin-compiler, which also ships
#     kotlin-stdlib.jar and kotlinx-coroutines-core-jvm.jar), cached in $XIUHUA_TOOLS_DIR;
#   - JNA from Debian (libjna-java), and a JDK when there is no java.
# The Kotlin bindings are generated at build time (library mode) into
# android/xiuhua-kotlin/build/generated/uniffi: they are not committed.
# Usage: scripts/kotlin-tests.sh [test-name-filter]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KOTLIN_VERSION=2.4.20
TOOLS=${XIUHUA_TOOLS_DIR:-$HOME/.cache/xiuhua-tools}
KOTLIN_HOME=$TOOLS/kotlin-compiler-$KOTLIN_VERSION
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MODULE=$ROOT/android/xiuhua-kotlin
BUILD=$MODULE/build
GEN=$BUILD/generated/uniffi
CLASSES=$BUILD/test-classes

log() { printf '\n== kotlin: %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root apt-get install -y -qq "$@"
}

# --- tools ---
command -v java >/dev/null || { log "installing a JDK"; apt_install default-jdk-headless; }
JNA_JAR=/usr/share/java/jna.jar
[ -f "$JNA_JAR" ] || { log "installing JNA (libjna-java)"; apt_install libjna-java; }
if [ ! -x "$KOTLIN_HOME/bin/kotlinc" ]; then
  log "installing kotlin-compiler@$KOTLIN_VERSION from npm into $KOTLIN_HOME"
  command -v npm >/dev/null || apt_install npm
  mkdir -p "$TOOLS"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "kotlin-compiler@$KOTLIN_VERSION" >/dev/null)
  mkdir -p "$KOTLIN_HOME.partial"
  tar xzf "$tmp"/kotlin-compiler-*.tgz -C "$KOTLIN_HOME.partial" --strip-components=1
  chmod +x "$KOTLIN_HOME.partial"/bin/*
  rm -rf "$tmp" "$KOTLIN_HOME"
  mv "$KOTLIN_HOME.partial" "$KOTLIN_HOME"
fi
STDLIB=$KOTLIN_HOME/lib/kotlin-stdlib.jar
COROUTINES=$KOTLIN_HOME/lib/kotlinx-coroutines-core-jvm.jar
for jar in "$STDLIB" "$COROUTINES" "$JNA_JAR"; do
  [ -f "$jar" ] || { echo "missing $jar" >&2; exit 1; }
done
# Debian's JNA loads its native part from the system library path.
JNI_DIRS=/usr/lib/$(uname -m)-linux-gnu/jni:/usr/lib/jni

# --- the Rust library, the server, the bindings ---
log "building the cdylib, uniffi-bindgen and xiuhua-server"
cargo build --locked -p xiuhua-ffi --lib --bin uniffi-bindgen
cargo build --locked -p xiuhua-server --bin xiuhua-server
case "$(uname)" in Darwin) LIB=$TARGET/debug/libxiuhua_ffi.dylib ;; *) LIB=$TARGET/debug/libxiuhua_ffi.so ;; esac
log "generating Kotlin bindings (library mode) into ${GEN#"$ROOT"/}"
rm -rf "$GEN"
"$TARGET/debug/uniffi-bindgen" generate --library "$LIB" --language kotlin --out-dir "$GEN" --no-format

# --- compile and run ---
# kotlinc takes most of this script's time: skip it when no input changed.
STAMP=$CLASSES/.inputs.sha256
inputs_hash=$( { echo "$KOTLIN_VERSION"; find "$GEN" "$MODULE/src/main/kotlin" "$MODULE/src/test/kotlin" -name '*.kt' -type f | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs_hash" ]; then
  log "bindings, layer and tests unchanged: reusing ${CLASSES#"$ROOT"/}"
else
  log "compiling bindings + repository layer + tests with kotlinc $KOTLIN_VERSION"
  rm -rf "$CLASSES"
  mkdir -p "$CLASSES"
  "$KOTLIN_HOME/bin/kotlinc" -nowarn -jvm-target 17 \
    -cp "$JNA_JAR:$COROUTINES" -d "$CLASSES" \
    "$GEN" "$MODULE/src/main/kotlin" "$MODULE/src/test/kotlin"
  echo "$inputs_hash" > "$STAMP"
fi

log "running the tests"
export XIUHUA_SERVER_BIN=$TARGET/debug/xiuhua-server
java -Djna.library.path="$TARGET/debug" -Djava.library.path="$JNI_DIRS" \
  -cp "$CLASSES:$STDLIB:$COROUTINES:$JNA_JAR" cn.xiuhua.TestRunnerKt "$@"
