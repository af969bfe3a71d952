#!/usr/bin/env bash
# Python tests: generates the Python bindings in library mode next to a link to the real
# cdylib (python/build/, not committed) and runs python/tests with the standard library's
# unittest (nothing to install).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$ROOT/python/build
PY=${PYTHON:-python3}

command -v "$PY" >/dev/null || { echo "no $PY" >&2; exit 1; }
printf '\n== python: building the cdylib and uniffi-bindgen\n'
cargo build --locked -p xiuhua-ffi --lib --bin uniffi-bindgen
case "$(uname)" in Darwin) LIB=libxiuhua_ffi.dylib ;; *) LIB=libxiuhua_ffi.so ;; esac
printf '\n== python: generating bindings (library mode) into python/build\n'
rm -rf "$OUT"
"$TARGET/debug/uniffi-bindgen" generate --library "$TARGET/debug/$LIB" --language python --out-dir "$OUT" --no-format
ln -s "$TARGET/debug/$LIB" "$OUT/$LIB"
printf '\n== python: running the tests\n'
PYTHONPATH="$OUT${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$ROOT/python/tests/test_xiuhua.py"
