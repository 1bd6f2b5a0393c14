"""``--chart PATH``: closed-loop throughput against concurrency, as a PNG (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

from bench.targets import Run


def chart(run: Run, path: Path) -> None:
    """One panel per measured deployment, one line per flow (flows per second), and the ceiling
    (requests per second) dashed in each; log scales."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    measured = [b for b in run.backends if b.report is not None]
    panels = max(1, len(measured))
    figure, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5.0), sharey=True, squeeze=False)
    ceiling = run.ceiling_flow
    xs = [c.concurrency for c in ceiling.closed]
    for ax in axes[0]:
        ax.plot(xs, [c.rate for c in ceiling.closed], "k--", marker="s",
                label="ceiling: bare proof check (req/s)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrent connections (closed loop)")
        ax.grid(True, which="both", alpha=0.3)
    for ax, backend in zip(axes[0], measured, strict=False):
        assert backend.report is not None
        for flow in backend.report.flows:
            ax.plot([c.concurrency for c in flow.closed], [c.rate for c in flow.closed],
                    marker="o", label=flow.title)  # fmt: skip
        ax.set_title(f"zkauth on {backend.title}")
    axes[0][0].set_ylabel("flows per second (log scale)")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=3, fontsize="small", frameon=False)
    quick = " (--quick)" if run.quick else ""
    figure.suptitle(f"throughput against concurrency{quick} — {run.machine}", fontsize="medium")
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
