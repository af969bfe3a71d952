#!/usr/bin/env bash
# Browser tests of the station console: builds the server, makes a temporary data folder with
# users, grants and console passwords through the real CLI, starts `xiuhua-server serve` with
# the console on a free port of 127.0.0.1, and runs console-tests/ (playwright-core driving
# Debian's headless chromium). Screenshots of every page land in console-tests/screenshots/
# (git-ignored). Installs chromium (apt) and playwright-core (npm ci) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        echo "console-tests: chromium is missing (apt-get install chromium)" >&2
        exit 1
    fi
fi
# A font with Chinese glyphs, so that the screenshots are legible (the pages need none).
if [ "$(id -u)" = 0 ] && command -v fc-list >/dev/null 2>&1 && [ -z "$(fc-list :lang=zh)" ]; then
    apt-get install -y -qq fonts-wqy-microhei >/dev/null || true
fi
if [ ! -d console-tests/node_modules/playwright-core ]; then
    (cd console-tests && npm ci --no-audit --no-fund --silent)
fi

nice cargo build -q -p xiuhua-server
# A phone (the core's store, syncing over HTTP) that makes the day's tasks and later syncs
# what the console did (tests/src/bin/console-phone.rs).
nice cargo build -q -p xiuhua-e2e --bin console-phone
bin="${CARGO_TARGET_DIR:-$root/target}/debug/xiuhua-server"
phone_bin="${CARGO_TARGET_DIR:-$root/target}/debug/console-phone"

data=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT

export XIUHUA_DATA_DIR="$data/server"
unset XIUHUA_DATABASE_URL
cli() { "$bin" "$@" >/dev/null; }
cli district add rd 容东片区
cli community add c1 金湖社区 --district rd
cli grid add g1 第一网格 --community c1
cli grid add g2 第二网格 --community c1
cli building add g1 3号楼
for u in "u-admin 站点管理员" "u-g1 王伟" "u-g2 刘洋" "u-lock 孙丽" "u-staff 赵敏" "u-sec 陈红"; do
    # shellcheck disable=SC2086
    cli user add $u
done
cli grant u-admin --grid g1 --role 管理员
cli grant u-admin --grid g2 --role 管理员
cli grant u-g1 --grid g1 --role 网格员
cli grant u-g2 --grid g2 --role 网格员
cli grant u-lock --grid g1 --role 网格员
cli grant u-staff --community c1 --role 社区工作者
cli grant u-sec --community c1 --role 社区书记
password="console-test-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
for u in u-admin u-g1 u-g2 u-lock u-staff u-sec; do
    # Standard input is not a terminal: the first line is the password.
    printf '%s\n' "$password" | "$bin" set-password "$u" >/dev/null
done

log="$data/server.log"
XIUHUA_CONSOLE=1 XIUHUA_LISTEN=127.0.0.1:0 XIUHUA_LOG=warn "$bin" serve >"$log" 2>&1 &
server_pid=$!
url=
for _ in $(seq 1 100); do
    url=$(sed -n 's/^listening on \(http:\/\/[0-9.:]*\)$/\1/p' "$log" | head -1)
    [ -n "$url" ] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "console-tests: the server did not start" >&2
    cat "$log" >&2
    exit 1
fi
echo "console-tests: server at $url"

# u-g1's phone makes the day's tasks on g1 and syncs; what it counts is in phone-seed.json.
code=$("$bin" enroll-code u-g1 | head -1)
"$phone_bin" seed "$data/phone" "$url" "$code" >"$data/phone-seed.json"
export PHONE_BIN="$phone_bin" PHONE_DIR="$data/phone" PHONE_SEED="$data/phone-seed.json"

cd console-tests
rm -rf screenshots
CONSOLE_URL="$url" CONSOLE_PASSWORD="$password" CONSOLE_SCREENSHOTS="$root/console-tests/screenshots" \
    node --test --test-concurrency=1 ./*.test.mjs
echo "console-tests: screenshots in console-tests/screenshots/"
