"""Draws bench/results/latest.png from a report on stdin: `chart.py <out.png> < report.json`.

Kept apart from the rest of the harness so that only the chart depends on matplotlib.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

COLOURS = {"direct": "#9e9e9e", "bosun": "#1f77b4", "envoy": "#d62728",
           "haproxy": "#2ca02c", "nginx": "#ff7f0e"}


def main() -> None:
    report = json.load(sys.stdin)
    results = report["results"]
    proxies = [name for name in results if name != "direct"]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7))

    def bars(axis, names, values, title, unit):
        colours = [COLOURS.get(name, "#555555") for name in names]
        labels = [results[name]["label"] for name in names]
        drawn = axis.bar(labels, values, color=colours)
        axis.bar_label(drawn, fontsize=8, labels=[
            f"{value:,.0f}" if value >= 100 else f"{value:.3g}" for value in values])
        axis.set_title(title)
        axis.set_ylabel(unit)

    bars(axes[0][0], list(results), [results[n]["median"]["max_rps"] for n in results],
         "Max requests/s, proxy on 1 core (higher is better)", "req/s")
    with_added = [n for n in proxies if results[n].get("added_us")]
    if with_added:
        width = 0.4
        positions = range(len(with_added))
        p50 = [results[n]["added_us"]["p50"] for n in with_added]
        p99 = [results[n]["added_us"]["p99"] for n in with_added]
        axis = axes[0][1]
        axis.bar([p - width / 2 for p in positions], p50, width, label="p50", color="#6baed6")
        axis.bar([p + width / 2 for p in positions], p99, width, label="p99", color="#08519c")
        axis.set_xticks(list(positions), [results[n]["label"] for n in with_added])
        axis.set_title("Latency added over direct at 1000 req/s (lower is better)")
        axis.set_ylabel("µs")
        axis.legend()
    else:
        axes[0][1].set_axis_off()
    bars(axes[1][0], proxies, [results[n]["median"]["cpu_per_1000rps"] for n in proxies],
         "Proxy CPU per 1000 req/s (lower is better)", "vCPU")
    bars(axes[1][1], proxies, [results[n]["median"]["rss_mib"] for n in proxies],
         "Proxy RSS under load (lower is better)", "MiB")
    figure.suptitle(f"HTTP/1.1 keep-alive, 1 KiB responses, loopback; median of "
                    f"{report['settings']['runs']} run(s)")
    figure.tight_layout()
    figure.savefig(sys.argv[1], dpi=100)


if __name__ == "__main__":
    main()
