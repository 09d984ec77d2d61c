"""From runs to figures: medians, the markdown table, the docs page and the chart."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from .procs import HarnessError

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
DIRECT = "direct"
# The target for two sidecars: added p99 at 1000 req/s at most half of Envoy's.
TWO_HOP_ADDED_P99_TARGET = 0.5

# Published figures for this machine class (one worker on one core, HTTP/1.1 keep-alive,
# 1 KiB, plaintext, median of 3): a run should land near them before it is trusted.
REFERENCE = {
    "envoy": {"max_rps": 25_000, "added_p50": 213, "added_p99": 361, "cpu": 0.168, "rss_mb": 64},
    "haproxy": {"max_rps": 63_000, "added_p50": 95, "added_p99": 147, "cpu": 0.074, "rss_mb": 15},
    "nginx": {"max_rps": 66_000, "added_p50": 78, "added_p99": 115, "cpu": 0.063, "rss_mb": 12},
}

# Figures taken per run; the summary holds the median of each over the runs.
RUN_METRICS = ("max_rps", "max_rps_proxy_cores", "max_rps_h2c", "max_rps_h2c_proxy_cores",
               "p50_us", "p90_us", "p99_us", "cpu_per_1000rps", "rss_mib", "private_mib", "threads",
               "errors",
               "foreign_cores", "handshakes_per_second", "handshake_proxy_cores",
               "handshake_cpu_us")


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for metric in RUN_METRICS:
        values = [run[metric] for run in runs if run.get(metric) is not None]
        summary[metric] = statistics.median(values) if values else None
    # Each proxy's peak RSS (client first), median by position: which sidecar weighs more.
    per_proxy = [run["rss_mib_per_proxy"] for run in runs if run.get("rss_mib_per_proxy")]
    summary["rss_mib_per_proxy"] = ([statistics.median(values) for values in zip(*per_proxy)]
                                    if per_proxy else None)
    return summary


def added_latency(results: dict) -> None:
    """Latency each proxy adds over going direct, from the medians (in place)."""
    direct = results.get(DIRECT, {}).get("median")
    for name, result in results.items():
        median = result["median"]
        result["added_us"] = None
        if direct is None or name == DIRECT:
            continue
        result["added_us"] = {
            pct: median[f"{pct}_us"] - direct[f"{pct}_us"] for pct in ("p50", "p90", "p99")
        }


def markdown_table(report: dict) -> str:
    """The results block of the docs: one proxy on the path, then two sidecars, then the
    settings, versions and the reference comparison."""
    results = report["results"]
    one_hop = {name: result for name, result in results.items() if result.get("hops", 1) < 2}
    two_hop = {name: result for name, result in results.items() if result.get("hops", 1) == 2}
    settings = report["settings"]
    lines = one_proxy_table(results, one_hop) if one_hop else []
    if two_hop:
        lines += ([""] if lines else []) + two_sidecar_table(results, two_hop)
    handshakes = handshake_table(results, settings)
    if handshakes:
        lines += ([""] if lines else []) + handshakes
    meta = report["meta"]
    compared = any(_baseline(results, name) for name in results)
    mtls_compared = any(_baseline(results, name) for name in results if _is_mtls(results, name))
    h2c = (f" Max rate over h2c: h2load, {settings['h2c_connections']} connections × "
           f"{settings['h2c_streams']} streams, {settings['max_rate_seconds']:.0f} s."
           if settings.get("h2c") else "")
    lines += [
        "",
        f"Median of {settings['runs']} run(s) on {meta['date']}, {meta['cpu']} "
        f"({meta['cpus']} vCPU), kernel {meta['kernel']}."
        + (" Ratios in brackets are against Envoy (against Envoy's two sidecars for two "
           "sidecars" + (", Envoy's two mTLS sidecars for mTLS" if mtls_compared else "")
           + ")." if compared else "")
        + f" Max rate: wrk, {settings['connections']} connections, "
        f"{settings['max_rate_seconds']:.0f} s.{h2c} Latency, CPU and RSS: h2load at "
        f"{settings['rate']} req/s over {settings['clients']} connections, "
        f"{settings['fixed_rate_seconds']:.0f} s."
        + (f" Bosun built with the `{meta['bosun_profile']}` profile, commit "
           f"`{meta['commit']}`." if meta.get("bosun_profile") else ""),
        "",
        "Versions: " + "; ".join(f"{label}: `{version}`"
                                 for label, version in meta["versions"].items() if version) + ".",
    ]
    if meta.get("noise_warning"):
        lines += ["", f"**Warning:** {meta['noise_warning']}"]
    lines += reference_table(results)
    return "\n".join(lines)


def one_proxy_table(results: dict, rows: dict) -> list[str]:
    lines = [
        "| | max req/s, 1 core | proxy core busy | max req/s, h2c | p50 | p90 | p99 "
        "| added p50 / p99 | CPU per 1000 req/s | RSS | of which private |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in rows.items():
        median = result["median"]
        is_proxy = name != DIRECT
        added = result.get("added_us")
        lines.append("| " + " | ".join([
            result["label"],
            f"{median['max_rps']:,.0f}{_ratio(results, name, 'max_rps')}",
            _percent(median["max_rps_proxy_cores"]) if is_proxy else "—",
            _h2c_rate(results, name),
            *_latencies(median),
            f"{added['p50']:+,.0f} / {added['p99']:+,.0f} µs" if added else "—",
            f"{median['cpu_per_1000rps']:.3f} vCPU{_ratio(results, name, 'cpu_per_1000rps')}"
            if is_proxy else "—",
            f"{median['rss_mib']:.1f} MiB{_ratio(results, name, 'rss_mib')}" if is_proxy else "—",
            _private(results, name) if is_proxy else "—",
        ]) + " |")
    return lines


def two_sidecar_table(results: dict, rows: dict) -> list[str]:
    """Client sidecar -> server sidecar -> app. CPU is both sidecars' together, RSS the
    larger sidecar's; the added p99 is set against Envoy's two sidecars, the issue's target."""
    target = f"≤ {TWO_HOP_ADDED_P99_TARGET:.1f}×"
    lines = [
        "Two sidecars (client sidecar → server sidecar → app), both on the proxy core:",
        "",
        "| | max req/s, 1 core | proxy core busy (both) | max req/s, h2c | p50 | p90 | p99 "
        f"| added p50 / p90 / p99 | added p99 against Envoy's (target {target}) "
        "| CPU per 1000 req/s (both) | RSS (larger sidecar) | of which private |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in rows.items():
        median = result["median"]
        added = result.get("added_us")
        lines.append("| " + " | ".join([
            result["label"],
            f"{median['max_rps']:,.0f}{_ratio(results, name, 'max_rps')}",
            _percent(median["max_rps_proxy_cores"]),
            _h2c_rate(results, name),
            *_latencies(median),
            (f"{added['p50']:+,.0f} / {added['p90']:+,.0f} / {added['p99']:+,.0f} µs"
             if added else "—"),
            _added_p99_against_baseline(results, name),
            f"{median['cpu_per_1000rps']:.3f} vCPU{_ratio(results, name, 'cpu_per_1000rps')}",
            f"{median['rss_mib']:.1f} MiB{_ratio(results, name, 'rss_mib')}",
            _private(results, name),
        ]) + " |")
    return lines


def _private(results: dict, name: str) -> str:
    """The anonymous part of the RSS peak (results of older runs have none)."""
    private = results[name]["median"].get("private_mib")
    if private is None:
        return "—"
    return f"{private:.1f} MiB{_ratio(results, name, 'private_mib')}"


def handshake_table(results: dict, settings: dict) -> list[str]:
    """New mTLS handshakes per second into a server sidecar's inbound port, for the
    targets that measured them, and that sidecar's CPU per handshake; ratios against
    their baseline (Envoy's)."""
    rows = [name for name, result in results.items()
            if result["median"].get("handshakes_per_second") is not None]
    if not rows:
        return []
    clients = settings.get("handshake_clients") or 1
    lines = [
        "New mTLS handshakes into the server sidecar's inbound port (`openssl s_time -new`: "
        "a full TLS 1.3 handshake with an ECDSA P-256 client certificate per connection, "
        f"{clients} process{'es' if clients > 1 else ''} on the load core, "
        f"{settings.get('handshake_seconds') or 0:.0f} s). Where the sidecar's core is well "
        "below 100% busy the load generator is the limit, and the CPU per handshake is "
        "the figure to compare:",
        "",
        "| | new handshakes/s | server sidecar core busy | CPU per handshake (server sidecar) |",
        "|---|---:|---:|---:|",
    ]
    for name in rows:
        median = results[name]["median"]
        cpu = median.get("handshake_cpu_us")
        lines.append("| " + " | ".join([
            results[name]["label"],
            f"{median['handshakes_per_second']:,.0f}"
            f"{_ratio(results, name, 'handshakes_per_second')}",
            _percent(median.get("handshake_proxy_cores")),
            f"{cpu:,.0f} µs{_ratio(results, name, 'handshake_cpu_us')}" if cpu else "—",
        ]) + " |")
    return lines


def _is_mtls(results: dict, name: str) -> bool:
    return bool(results[name].get("mtls"))


def _baseline(results: dict, name: str) -> dict | None:
    """The median figures `name` is compared with, if its baseline ran and is another."""
    baseline = results[name].get("baseline")
    if name == DIRECT or baseline is None or baseline == name or baseline not in results:
        return None
    return results[baseline]["median"]


def _ratio(results: dict, name: str, metric: str) -> str:
    baseline = _baseline(results, name)
    value = results[name]["median"].get(metric)
    if baseline is None or not baseline.get(metric) or value is None:
        return ""
    return f" ({value / baseline[metric]:.2f}×)"


def _added_p99_against_baseline(results: dict, name: str) -> str:
    """Added p99 over the baseline's added p99, and whether it meets the target; "—" when
    either is missing or the baseline added nothing measurable (no ratio to speak of)."""
    baseline = results[name].get("baseline")
    added = results[name].get("added_us")
    baseline_added = results.get(baseline, {}).get("added_us") if baseline != name else None
    if not added or not baseline_added or baseline_added["p99"] <= 0:
        return "—"
    share = added["p99"] / baseline_added["p99"]
    verdict = "met" if share <= TWO_HOP_ADDED_P99_TARGET else "not met"
    return f"{share:.2f}× ({verdict})"


def _h2c_rate(results: dict, name: str) -> str:
    rate = results[name]["median"].get("max_rps_h2c")
    return f"{rate:,.0f}{_ratio(results, name, 'max_rps_h2c')}" if rate is not None else "—"


def _latencies(median: dict) -> list[str]:
    return [f"{median[f'{pct}_us']:,.0f} µs" for pct in ("p50", "p90", "p99")]


def _percent(share: float | None) -> str:
    return f"{share * 100:.0f}%" if share is not None else "—"


def reference_table(results: dict) -> list[str]:
    """This run beside the reference figures, for the proxies that have them."""
    rows = []
    for name, reference in REFERENCE.items():
        if name not in results:
            continue
        median, added = results[name]["median"], results[name].get("added_us")
        rows.append("| " + " | ".join([
            results[name]["label"],
            f"{reference['max_rps']:,} / {median['max_rps']:,.0f}",
            f"+{reference['added_p50']} / +{reference['added_p99']} µs"
            + (f" · {added['p50']:+,.0f} / {added['p99']:+,.0f} µs" if added else ""),
            f"{reference['cpu']:.3f} / {median['cpu_per_1000rps']:.3f}",
            f"{reference['rss_mb']} MB / {median['rss_mib']:.1f} MiB",
        ]) + " |")
    if not rows:
        return []
    return [
        "",
        "Beside the reference figures for this machine class (reference / this run):",
        "",
        "| | max req/s | added p50 / p99 (reference · this run) | CPU per 1000 req/s "
        "| RSS |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ]


def update_docs(doc_path: Path, table: str, chart_name: str | None) -> None:
    text = doc_path.read_text()
    start, end = text.find(RESULTS_START), text.find(RESULTS_END)
    if start < 0 or end < start:
        raise HarnessError(f"{doc_path} lacks the {RESULTS_START} / {RESULTS_END} markers")
    body = table
    if chart_name:
        body += f"\n\n![Bosun, Envoy, HAProxy and nginx side by side]({chart_name})"
    doc_path.write_text(text[:start + len(RESULTS_START)] + "\n" + body + "\n" + text[end:])


def write_chart(report: dict, png_path: Path) -> bool:
    """Draws the chart in a child Python, so a missing or broken matplotlib only skips it."""
    script = Path(__file__).with_name("chart.py")
    import json
    result = subprocess.run([sys.executable, str(script), str(png_path)],
                            input=json.dumps(report), capture_output=True, text=True)
    if result.returncode != 0:
        print(f"chart skipped: {result.stderr.strip().splitlines()[-1:]}", flush=True)
        return False
    return True
