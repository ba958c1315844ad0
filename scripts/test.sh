#!/usr/bin/env bash
# Runs Herald's whole test suite: unit tests, the store conformance suite, integration tests
# against the real server, the kill -9 test, the headless-browser test of the chat page, Novu's
# Node SDK against Herald, and email steps against a real SMTP server. Installs what they need
# (Debian's chromium, Node.js and npm, playwright-core from npm, aiosmtpd from PyPI) when missing.
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

# The notification tests need Node.js with npm (Novu's SDK) and Python's aiosmtpd (a real SMTP
# server for email steps).
if ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: installing nodejs and npm (Debian packages) for the Novu SDK test"
  $(need_root) apt-get update -qq && $(need_root) apt-get install -y -qq nodejs npm >/dev/null
fi
if ! python3 -c "import aiosmtpd" >/dev/null 2>&1; then
  echo "test.sh: installing aiosmtpd (PyPI) for the email tests"
  python3 -m pip install --quiet aiosmtpd || $(need_root) apt-get install -y -qq python3-aiosmtpd >/dev/null
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "test.sh: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

exec cargo nextest run --workspace --no-fail-fast "$@"
