#!/usr/bin/env bash
# Nagare's one test command (README, CI): formatting, lints, release build, unit and integration
# tests (real nagare processes driven by librdkafka), then the client compatibility script
# (kcat, confluent-kafka-python, kafka-python, aiokafka, kafkajs), the web console's browser
# tests (Playwright driving headless Chromium), then the fuzz targets for a bounded time.
#
# Works on a fresh machine with only the Rust toolchain, gcc, make, Python 3.11+ with pip,
# Node and npm: it installs kcat and chromium (apt), the Python clients (pip), kafkajs (npm,
# into tests/compat/kafkajs/) and playwright-core (npm, into tests/console/) when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

if ! command -v kcat >/dev/null 2>&1; then
  step "installing kcat (apt)"
  apt_install kcat
fi

if [ ! -x /usr/bin/chromium ]; then
  step "installing chromium (apt), for the console's browser tests"
  apt_install chromium
fi

step "installing playwright-core (npm ci, tests/console)"
npm ci --prefix tests/console --no-audit --no-fund --loglevel=error

step "installing Python client libraries (pip)"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
if ! python3 -m pip install -q -r tests/compat/requirements.txt; then
  # Debian's system Python refuses plain pip installs (PEP 668); these are test-only packages.
  python3 -m pip install -q --break-system-packages -r tests/compat/requirements.txt
fi

step "installing kafkajs (npm ci, tests/compat/kafkajs)"
npm ci --prefix tests/compat/kafkajs --no-audit --no-fund --loglevel=error

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# The compatibility script and the browser tests drive the debug `nagare` binary `cargo test`
# has just built: they check behaviour, not speed, and a release build would add ~7 minutes.
# Both suites run even if the first fails, so one run reports everything; either failing fails.
step "cargo test"
cargo_status=0
cargo test --workspace --no-fail-fast || cargo_status=$?

step "client compatibility (kcat, confluent-kafka, kafka-python, aiokafka, kafkajs)"
compat_status=0
NAGARE_BIN=target/debug/nagare python3 tests/compat/run_compat.py || compat_status=$?

step "web console browser tests (Playwright, headless Chromium)"
console_status=0
NAGARE_BIN=target/debug/nagare node tests/console/run_console.mjs || console_status=$?

# Every fuzz target for a bounded time (NAGARE_FUZZ_SECS, default 10 s each), on stable Rust.
step "fuzzing (scripts/fuzz.sh)"
fuzz_status=0
bash scripts/fuzz.sh || fuzz_status=$?

if [ "$cargo_status" -ne 0 ] || [ "$compat_status" -ne 0 ] || [ "$console_status" -ne 0 ] \
  || [ "$fuzz_status" -ne 0 ]; then
  echo "FAILED: cargo test exit $cargo_status, compatibility script exit $compat_status," \
    "console browser tests exit $console_status, fuzzing exit $fuzz_status" >&2
  exit 1
fi
