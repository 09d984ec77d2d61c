#!/usr/bin/env bash
# Smoke test of the benchmark harness: one short run straight to the upstream and one
# through Bosun's proxy. Fails only when no figures come out, never on how fast they are.
#
#   bash bench/smoke.sh                 # builds bosun (debug) unless BOSUN_BIN is set
set -euo pipefail
cd "$(dirname "$0")/.."

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

bosun_bin="${BOSUN_BIN:-}"
if [[ -z "$bosun_bin" ]]; then
  # A debug build is enough to prove the harness works, and CI has one already.
  cargo build --quiet -p bosun
  bosun_bin=target/debug/bosun
fi

python3 bench/run.py --quick --only direct,bosun --bosun-bin "$bosun_bin" \
  --output "$out/smoke.json" --no-docs --no-chart

python3 - "$out/smoke.json" <<'PY'
import json, sys

results = json.load(open(sys.argv[1]))["results"]
required = {
    "direct": ("max_rps", "p50_us", "p99_us"),
    "bosun": ("max_rps", "p50_us", "p99_us", "cpu_per_1000rps", "rss_mib"),
}
missing = [f"{target}.{metric}" for target, metrics in required.items()
           for metric in metrics
           if not (results.get(target, {}).get("median", {}).get(metric) or 0) > 0]
if missing:
    sys.exit(f"bench smoke: no figure for {', '.join(missing)}")
print("bench smoke: direct and bosun produced figures")
PY
