#!/usr/bin/env bash
# Runs Herald's whole test suite: unit tests, the store conformance suite, integration tests
# against the real server, the kill -9 tests, the headless-browser test of the chat page, Novu's
# Node SDK against Herald, email steps against a real SMTP server, and integration presets
# against the platforms' own signing libraries. Installs what they need (Debian's chromium,
# Node.js and npm, playwright-core and the signing libraries from npm, aiosmtpd from PyPI) when
# missing.
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
# The integration presets are tested with requests signed by the platforms' own libraries
# (npm: standardwebhooks, @octokit/webhooks-methods, stripe, twilio, tweetnacl).
if [ ! -d tests/integrations/node_modules/stripe ]; then
  (cd tests/integrations && npm ci --no-audit --no-fund --silent)
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
