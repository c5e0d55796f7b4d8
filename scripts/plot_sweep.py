"""Draw swept metrics against a swept param, from `dvc exp show --json`.

After a sweep the DVC way, e.g.

    for arch in mlp conv; do for z in 2 8 16 32 64; do
      dvc exp run --queue -n $arch-z$z -S latent_dim=$z -S datasets.mnist.model.architecture=$arch \\
          evaluate@mnist plot@mnist
    done; done
    dvc queue start -j 2          # wait for `dvc queue status` to show them done
    dvc exp show --sort-by metrics/mnist.json:prior.fid --sort-order asc

this draws one panel per metric against the param, one line per value of ``--group``:

    python -m scripts.plot_sweep --param latent_dim --group datasets.mnist.model.architecture \\
        --metrics prior.fid,gmm.fid,prior.precision,prior.recall --out docs/results/sweep.png

It runs `dvc exp show --json` itself (or reads its saved output with ``--json``), flattens every
experiment's params and metrics into one pandas table (printed, sorted by the first metric) and
writes the figure. Experiments without metrics (queued, failed) are left out; where several
experiments share a point of the sweep, the newest one counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from vaelab.core.cli import run_cli
from vaelab.core.errors import VaelabError


def _states(records: list[dict[str, Any]], executor_state: str | None = None) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every experiment state in `dvc exp show --json` output (baselines and their experiments),
    with the state of the executor that ran it (success, queued, failed, ...) where there is one."""
    for record in records:
        yield record, executor_state
        for exp_range in record.get("experiments") or []:
            yield from _states(exp_range.get("revs") or [], (exp_range.get("executor") or {}).get("state"))


def _file_data(files: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name, result in (files or {}).items():
        if wanted is None or name == wanted:
            merged.update((result or {}).get("data") or {})
    return merged


def experiments_table(records: list[dict[str, Any]], metrics_file: str | None = None):
    """A pandas DataFrame, one row per experiment with metrics: ``experiment``, ``rev``, the
    params flattened with dots (``datasets.mnist.model.architecture``) and the metrics of
    ``metrics_file`` (all metrics files when None). The workspace row is left out."""
    import pandas as pd

    rows = []
    for state, executor_state in _states(records):
        data = state.get("data") or {}
        metrics = _file_data(data.get("metrics"), metrics_file)
        if state.get("rev") == "workspace" or not metrics or executor_state in ("queued", "running", "failed"):
            continue
        params = pd.json_normalize(_file_data(data.get("params"), None), sep=".").to_dict("records")
        flat = pd.json_normalize(metrics, sep=".").to_dict("records")  # prior.fid, gmm.fid, ...
        rows.append({"experiment": state.get("name") or state["rev"][:7], "rev": state["rev"],
                     "timestamp": data.get("timestamp"), **(params[0] if params else {}), **flat[0]})
    return pd.DataFrame(rows)


def exp_show_records(saved: Path | None = None) -> list[dict[str, Any]]:
    """The records of `dvc exp show --json`, run here (or read from its ``saved`` output)."""
    if saved:
        text = saved.read_text()
    else:
        result = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
        if result.returncode != 0:
            raise VaelabError(f"`dvc exp show --json` failed: {result.stderr.strip()[-500:]}")
        text = result.stdout
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise VaelabError(f"`dvc exp show --json` output is not JSON ({error})") from None


def sweep_frame(table, param: str, metrics: list[str], group: str | None):
    """The rows of the sweep: one per (group, param) point (the newest experiment of each), sorted."""
    missing = [column for column in [param, *metrics, *([group] if group else [])] if column not in table.columns]
    if table.empty or missing:
        raise VaelabError(f"no experiments with {', '.join(missing) or 'metrics'} in `dvc exp show`; run the sweep "
                          f"first, or check --param/--group/--metrics against `dvc exp show` (have: "
                          f"{', '.join(map(str, table.columns)) or 'nothing'})")
    keys = [group, param] if group else [param]
    frame = table.sort_values("timestamp", kind="stable").drop_duplicates(keys, keep="last")
    return frame[["experiment", *keys, *metrics]].sort_values(keys).reset_index(drop=True)


def draw(frame, param: str, metrics: list[str], group: str | None, path: Path, logx: bool) -> None:
    """One panel per metric, the metric against ``param``, one line per ``group`` value."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * len(metrics), 3.3), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    groups = frame.groupby(group, sort=True) if group else [(None, frame)]
    for ax, metric in zip(axes, metrics):
        for name, part in groups:
            ax.plot(part[param], part[metric], marker="o", label=str(name) if group else None)
        ax.set_title(metric)
        ax.set_xlabel(param.rsplit(".", 1)[-1])
        if logx:
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted(frame[param].unique()), labels=[str(v) for v in sorted(frame[param].unique())])
        ax.grid(alpha=0.3)
    if group:
        axes[0].legend(title=group.rsplit(".", 1)[-1], fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--param", required=True, help="the swept param, dotted (latent_dim)")
    parser.add_argument("--metrics", required=True, help="comma-separated metric names, dotted (prior.fid,gmm.fid)")
    parser.add_argument("--group", help="a second param: one line per value (datasets.mnist.model.architecture)")
    parser.add_argument("--metrics-file", default=None, help="the metrics file to read (default: all)")
    parser.add_argument("--json", type=Path, help="saved `dvc exp show --json` output (default: run it)")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--logx", action="store_true", help="log2 x axis (latent sizes)")
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]

    frame = sweep_frame(experiments_table(exp_show_records(args.json), args.metrics_file), args.param, metrics,
                        args.group)
    draw(frame, args.param, metrics, args.group, args.out, args.logx)
    print(frame.sort_values(metrics[0], kind="stable").to_string(index=False))
    print(f"wrote {args.out} ({len(frame)} experiments)")


if __name__ == "__main__":
    run_cli(main)
