"""Draws bench/results/latest.png from a report on stdin: `chart.py <out.png> < report.json`.

Kept apart from the rest of the harness so that only the chart depends on matplotlib.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

COLOURS = {"direct": "#9e9e9e", "bosun": "#1f77b4", "envoy": "#d62728",
           "haproxy": "#2ca02c", "nginx": "#ff7f0e",
           # Two sidecars: the proxy's colour, lighter.
           "bosun-2hop": "#9ecae1", "envoy-2hop": "#fc9272",
           # Two sidecars with mTLS: the proxy's colour, darker.
           "bosun-2hop-mtls": "#08519c", "envoy-2hop-mtls": "#a50f15"}


def main() -> None:
    report = json.load(sys.stdin)
    results = report["results"]
    proxies = [name for name in results if name != "direct"]
    figure, axes = plt.subplots(2, 2, figsize=(12, 8))

    def bars(axis, names, values, title, unit):
        colours = [COLOURS.get(name, "#555555") for name in names]
        labels = [results[name]["label"] for name in names]
        drawn = axis.bar(labels, values, color=colours)
        axis.bar_label(drawn, fontsize=8, labels=[
            f"{value:,.0f}" if value >= 100 else f"{value:.3g}" for value in values])
        axis.set_title(title)
        axis.set_ylabel(unit)
        axis.margins(y=0.12)  # room for the value labels under the title
        axis.tick_params(axis="x", labelsize=8, labelrotation=20)

    def max_rates(axis):
        """HTTP/1.1 and, where measured, h2c side by side for each target."""
        names = list(results)
        h2c = [results[n]["median"].get("max_rps_h2c") for n in names]
        if not any(rate is not None for rate in h2c):
            bars(axis, names, [results[n]["median"]["max_rps"] for n in names],
                 "Max requests/s, proxy on 1 core (higher is better)", "req/s")
            return
        width = 0.4
        positions = range(len(names))
        colours = [COLOURS.get(name, "#555555") for name in names]
        http1 = axis.bar([p - width / 2 for p in positions],
                         [results[n]["median"]["max_rps"] for n in names], width,
                         color=colours, label="HTTP/1.1")
        h2 = axis.bar([p + width / 2 for p in positions], [rate or 0 for rate in h2c], width,
                      color=colours, hatch="//", edgecolor="white", label="h2c")
        for drawn in (http1, h2):
            axis.bar_label(drawn, fontsize=6, rotation=90, padding=2, labels=[
                f"{bar.get_height():,.0f}" if bar.get_height() else "" for bar in drawn])
        axis.set_xticks(list(positions), [results[n]["label"] for n in names])
        axis.tick_params(axis="x", labelsize=8, labelrotation=20)
        axis.set_title("Max requests/s, proxies on 1 core (higher is better)")
        axis.margins(y=0.15)
        axis.set_ylabel("req/s")
        axis.legend(fontsize=8)

    max_rates(axes[0][0])
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
        axis.tick_params(axis="x", labelsize=8, labelrotation=20)
        axis.set_title("Latency added over direct at 1000 req/s (lower is better)")
        axis.set_ylabel("µs")
        axis.legend()
    else:
        axes[0][1].set_axis_off()
    bars(axes[1][0], proxies, [results[n]["median"]["cpu_per_1000rps"] for n in proxies],
         "CPU per 1000 req/s; 2 sidecars: both (lower is better)", "vCPU")
    bars(axes[1][1], proxies, [results[n]["median"]["rss_mib"] for n in proxies],
         "RSS under load; 2 sidecars: the larger (lower is better)", "MiB")
    figure.suptitle(f"HTTP/1.1 keep-alive (and h2c for max rate), 1 KiB responses, loopback; "
                    f"median of {report['settings']['runs']} run(s)")
    figure.tight_layout()
    figure.savefig(sys.argv[1], dpi=100)


if __name__ == "__main__":
    main()
