#!/usr/bin/env bash
# Runs Herald's whole test suite: unit tests, the store conformance suite, integration tests
# against the real server, the kill -9 test, and the headless-browser test of the chat page.
# Installs what the browser test needs (Debian's chromium, playwright-core from npm) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_root() { if [ "$(id -u)" -ne 0 ]; then echo "sudo"; fi; }

if [ -z "${HERALD_SKIP_BROWSER:-}" ]; then
  if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    echo "test.sh: installing chromium (Debian package) for the browser test"
    $(need_root) apt-get update -qq && $(need_root) apt-get install -y -qq chromium >/dev/null
  fi
  if ! command -v node >/dev/null 2>&1; then
    echo "test.sh: installing nodejs and npm (Debian packages) for the browser test"
    $(need_root) apt-get update -qq && $(need_root) apt-get install -y -qq nodejs npm >/dev/null
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
  fi
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

exec cargo nextest run --workspace --no-fail-fast "$@"
