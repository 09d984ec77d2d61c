"""From runs to figures: medians, the markdown table, the docs page and the chart."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from .procs import HarnessError

RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"
BASELINE = "envoy"
DIRECT = "direct"

# Published figures for this machine class (one worker on one core, HTTP/1.1 keep-alive,
# 1 KiB, plaintext, median of 3): a run should land near them before it is trusted.
REFERENCE = {
    "envoy": {"max_rps": 25_000, "added_p50": 213, "added_p99": 361, "cpu": 0.168, "rss_mb": 64},
    "haproxy": {"max_rps": 63_000, "added_p50": 95, "added_p99": 147, "cpu": 0.074, "rss_mb": 15},
    "nginx": {"max_rps": 66_000, "added_p50": 78, "added_p99": 115, "cpu": 0.063, "rss_mb": 12},
}

# Figures taken per run; the summary holds the median of each over the runs.
RUN_METRICS = ("max_rps", "max_rps_proxy_cores", "p50_us", "p90_us", "p99_us",
               "cpu_per_1000rps", "rss_mib", "threads", "errors", "foreign_cores")


def summarize(runs: list[dict]) -> dict:
    summary = {}
    for metric in RUN_METRICS:
        values = [run[metric] for run in runs if run.get(metric) is not None]
        summary[metric] = statistics.median(values) if values else None
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
    results = report["results"]
    baseline = results.get(BASELINE, {}).get("median")

    def ratio(name: str, metric: str) -> str:
        if baseline is None or name in (BASELINE, DIRECT) or not baseline.get(metric):
            return ""
        value = results[name]["median"].get(metric)
        return f" ({value / baseline[metric]:.2f}×)" if value is not None else ""

    lines = [
        "| | max req/s, 1 core | proxy core busy | p50 | p90 | p99 | added p50 / p99 "
        "| CPU per 1000 req/s | RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        median = result["median"]
        is_proxy = name != DIRECT
        added = result.get("added_us")
        lines.append("| " + " | ".join([
            result["label"],
            f"{median['max_rps']:,.0f}{ratio(name, 'max_rps')}",
            f"{median['max_rps_proxy_cores'] * 100:.0f}%" if is_proxy else "—",
            f"{median['p50_us']:,.0f} µs",
            f"{median['p90_us']:,.0f} µs",
            f"{median['p99_us']:,.0f} µs",
            f"{added['p50']:+,.0f} / {added['p99']:+,.0f} µs" if added else "—",
            f"{median['cpu_per_1000rps']:.3f} vCPU{ratio(name, 'cpu_per_1000rps')}"
            if is_proxy else "—",
            f"{median['rss_mib']:.1f} MiB{ratio(name, 'rss_mib')}" if is_proxy else "—",
        ]) + " |")
    settings = report["settings"]
    meta = report["meta"]
    lines += [
        "",
        f"Median of {settings['runs']} run(s) on {meta['date']}, {meta['cpu']} "
        f"({meta['cpus']} vCPU), kernel {meta['kernel']}."
        + (" Ratios in brackets are against Envoy." if baseline else "")
        + f" Max rate: wrk, {settings['connections']} connections, "
        f"{settings['max_rate_seconds']:.0f} s. Latency, CPU and RSS: h2load at "
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
