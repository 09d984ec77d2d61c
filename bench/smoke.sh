#!/usr/bin/env bash
# Smoke test of the benchmark harness: one short run straight to the upstream, one through
# Bosun's proxy, one through two Bosun sidecars and one through two Bosun sidecars speaking
# mTLS (with its new-handshakes run), each over HTTP/1.1 and h2c. Fails only when no
# figures come out, never on how fast they are.
#
#   bash bench/smoke.sh                 # builds bosun (debug) unless BOSUN_BIN is set
#
# As root on Debian, the harness installs what it lacks (wrk, nghttp2-client, nginx,
# openssl) with apt-get; elsewhere it prints the command to run.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

bosun_bin="${BOSUN_BIN:-}"
if [[ -z "$bosun_bin" ]]; then
  # A debug build is enough to prove the harness works, and CI has one already.
  cargo build --quiet --locked -p bosun
  bosun_bin=target/debug/bosun
fi

python3 bench/run.py --quick --only direct,bosun,bosun-2hop,bosun-2hop-mtls --bosun-bin "$bosun_bin" \
  --output "$out/smoke.json" --no-docs --no-chart

python3 - "$out/smoke.json" <<'PY'
import json, sys

results = json.load(open(sys.argv[1]))["results"]
latency = ("max_rps", "max_rps_h2c", "p50_us", "p90_us", "p99_us")
proxied = latency + ("max_rps_proxy_cores", "cpu_per_1000rps", "rss_mib")
mtls = proxied + ("handshakes_per_second", "handshake_proxy_cores")
required = {"direct": latency, "bosun": proxied, "bosun-2hop": proxied, "bosun-2hop-mtls": mtls}
missing = [f"{target}.{metric}" for target, metrics in required.items()
           for metric in metrics
           if not (results.get(target, {}).get("median", {}).get(metric) or 0) > 0]
# Two sidecars: an RSS for each of them, not only the larger one.
for target in ("bosun-2hop", "bosun-2hop-mtls"):
    sidecars = results.get(target, {}).get("median", {}).get("rss_mib_per_proxy") or []
    if len(sidecars) != 2 or not all(mib > 0 for mib in sidecars):
        missing.append(f"{target}.rss_mib_per_proxy (client and server)")
if missing:
    sys.exit(f"bench smoke: no figure for {', '.join(missing)}")
print("bench smoke: " + ", ".join(required) + " produced figures")
PY
echo "bench smoke: $((SECONDS - started)) s"
