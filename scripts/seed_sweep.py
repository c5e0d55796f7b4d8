"""Error bars the papers' way: the same experiment over several seeds, then mean ± std per metric.

    python -m scripts.seed_sweep --seeds 0,1,2 --metrics prior.fid,gmm.fid,prior.precision,test.elbo \
        -S datasets.mnist.model.architecture=conv -S latent_dim=16 --targets evaluate@mnist

runs ``dvc exp run -n <name>-seed<k> -S seed=<k> [-S ...] [targets]`` for each seed in turn (a
seed re-runs train, the fits, the score stages, evaluate and plot only: the data stages and the reference
statistics take ``data_seed``), each from the same ``params.yaml`` (DVC applies an experiment's
params to the workspace, so it restores the sweep's own before the next seed: every seed gets
exactly the ``-S`` set, and a ``+key=value`` that adds a key works for every seed), then reads
`dvc exp show --json` and prints, per metric, the mean ± the sample standard deviation (ddof = 1,
as Dai & Wipf 2019 and Ghosh et al. 2020 report) over the seeds' experiments. ``--no-run`` only
aggregates experiments that already exist.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from scripts.plot_sweep import exp_show_records, experiments_table
from vaelab.core.cli import run_cli
from vaelab.core.errors import VaelabError


def experiment_name(prefix: str, seed: int) -> str:
    return f"{prefix}-seed{seed}"


def summary(table: Any, names: list[str], metrics: list[str]) -> Any:
    """One row per metric: mean, std (ddof 1), n, over the experiments named ``names`` (the newest
    of each name)."""
    import pandas as pd

    runs = table[table["experiment"].isin(names)].sort_values("timestamp", kind="stable")
    runs = runs.drop_duplicates("experiment", keep="last")
    missing = sorted(set(names) - set(runs["experiment"]))
    if missing:
        raise VaelabError(f"no finished experiment named {', '.join(missing)} in `dvc exp show`; run them first "
                          f"(without --no-run)")
    absent = [m for m in metrics if m not in runs.columns]
    if absent:
        raise VaelabError(f"metrics {', '.join(absent)} not in the experiments (have: "
                          f"{', '.join(c for c in runs.columns if c not in ('experiment', 'rev', 'timestamp'))})")
    values = runs[metrics].astype(float)
    return pd.DataFrame({"metric": metrics, "mean": values.mean().values, "std": values.std(ddof=1).values,
                         "n": len(runs)})


def run_seeds(seeds: list[int], names: list[str], set_params: list[str], targets: list[str],
              params_file: Path) -> None:
    """``dvc exp run -n <name> -S seed=<seed> [-S ...] [targets]`` per seed, each from ``params_file``
    as it was before the first: DVC applies a finished experiment to the workspace, and its params
    there would make the next seed's ``-S +key=value`` fail ("an item is already at key")."""
    if not params_file.is_file():
        raise VaelabError(f"{params_file} not found in {Path.cwd()}; run the sweep from the project's root")
    baseline = params_file.read_bytes()
    for index, (seed, name) in enumerate(zip(seeds, names)):
        if index:
            params_file.write_bytes(baseline)
        command = [sys.executable, "-m", "dvc", "exp", "run", "-n", name, "-S", f"seed={seed}",
                   *(item for value in set_params for item in ("-S", value)), *targets]
        print(f"seed {seed}: {' '.join(command[2:])}", flush=True)
        if subprocess.run(command).returncode != 0:
            raise VaelabError(f"`dvc {' '.join(command[3:])}` failed; see its output above")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", required=True, help="comma-separated seeds (0,1,2)")
    parser.add_argument("--metrics", required=True, help="comma-separated metric names")
    parser.add_argument("-S", "--set-param", action="append", default=[], metavar="KEY=VALUE",
                        help="a param for every run, as `dvc exp run -S` takes it")
    parser.add_argument("--targets", nargs="*", default=[], help="stages to reproduce (default: the whole pipeline)")
    parser.add_argument("--name", default="sweep", help="experiment name prefix (default: sweep)")
    parser.add_argument("--metrics-file", default=None, help="the metrics file to read (default: all)")
    parser.add_argument("--no-run", action="store_true", help="only aggregate existing experiments")
    parser.add_argument("--json", type=Path, help="saved `dvc exp show --json` output (with --no-run)")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise VaelabError(f"--seeds {args.seeds!r} is invalid; allowed: comma-separated integers (0,1,2)") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise VaelabError(f"--seeds {args.seeds!r} is invalid; allowed: at least two different seeds")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    names = [experiment_name(args.name, seed) for seed in seeds]
    if not args.no_run:
        run_seeds(seeds, names, args.set_param, args.targets, Path("params.yaml"))
    table = summary(experiments_table(exp_show_records(args.json), args.metrics_file), names, metrics)
    for row in table.itertuples():
        print(f"{row.metric}: {row.mean:.4g} ± {row.std:.2g} (mean ± std over {row.n} seeds)")


if __name__ == "__main__":
    run_cli(main)
