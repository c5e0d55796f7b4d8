"""scripts/plot_sweep.py on `dvc exp show --json` records of DVC 3's shape (the end-to-end test runs
it on real output)."""

from __future__ import annotations

import json
import subprocess

import pytest
from PIL import Image

from scripts import plot_sweep
from vaelab.core.errors import VaelabError


def state(rev, name, arch, latent, fid=None, timestamp="2026-11-23T10:00:00", experiments=None):
    metrics = {"metrics/mnist.json": {"data": {"fid": fid, "recall": 1.0 / latent}}} if fid is not None else {}
    return {"rev": rev, "name": name, "error": None, "experiments": experiments,
            "data": {"rev": rev, "timestamp": timestamp, "metrics": metrics, "deps": {}, "outs": {},
                     "params": {"params.yaml": {"data": {"seed": 42, "latent_dim": latent,
                                                         "datasets": {"mnist": {"model": {"architecture": arch}}}}}}}}


def exp(record, executor_state="success"):
    return {"revs": [record], "name": record["name"], "executor": {"state": executor_state, "local": None}}


RECORDS = [
    state("workspace", None, "mlp", 2, fid=99.0),
    state("a" * 40, "main", "mlp", 2, fid=10.0, experiments=[
        exp(state("b" * 40, "mlp-z8", "mlp", 8, fid=5.0, timestamp="2026-11-23T11:00:00")),
        exp(state("c" * 40, "conv-z8", "conv", 8, fid=3.0, timestamp="2026-11-23T11:30:00")),
        exp(state("d" * 40, "conv-z2", "conv", 2, fid=7.0, timestamp="2026-11-23T11:40:00"), "failed"),
        exp(state("e" * 40, "mlp-z16", "mlp", 16, timestamp="2026-11-23T11:50:00"), "queued"),
        exp(state("f" * 40, "mlp-z2", "mlp", 2, fid=9.0, timestamp="2026-11-23T12:00:00")),
    ]),
]
GROUP = "datasets.mnist.model.architecture"


def test_table_flattens_params_and_keeps_experiments_with_metrics():
    table = plot_sweep.experiments_table(RECORDS, "metrics/mnist.json")
    # The workspace, the failed and the queued experiment are left out.
    assert list(table["experiment"]) == ["main", "mlp-z8", "conv-z8", "mlp-z2"]
    assert list(table[GROUP]) == ["mlp", "mlp", "conv", "mlp"]
    assert list(table["fid"]) == [10.0, 5.0, 3.0, 9.0] and table.loc[1, "latent_dim"] == 8


def test_sweep_keeps_the_newest_of_each_point_and_draws_a_panel_per_metric(tmp_path):
    table = plot_sweep.experiments_table(RECORDS)
    frame = plot_sweep.sweep_frame(table, "latent_dim", ["fid", "recall"], GROUP)
    assert frame.to_dict("records") == [
        {"experiment": "conv-z8", GROUP: "conv", "latent_dim": 8, "fid": 3.0, "recall": 0.125},
        {"experiment": "mlp-z2", GROUP: "mlp", "latent_dim": 2, "fid": 9.0, "recall": 0.5},
        {"experiment": "mlp-z8", GROUP: "mlp", "latent_dim": 8, "fid": 5.0, "recall": 0.125},
    ]
    out = tmp_path / "sweep.png"
    plot_sweep.draw(frame, "latent_dim", ["fid", "recall"], GROUP, out, logx=True)
    with Image.open(out) as image:
        assert image.size == (720, 330)


def test_cli_reads_saved_json_and_prints_the_sorted_table(tmp_path, capsys):
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(RECORDS))
    plot_sweep.main(["--json", str(saved), "--param", "latent_dim", "--group", GROUP, "--metrics", "fid",
                     "--out", str(tmp_path / "out" / "sweep.png")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[0] == "conv-z8" and lines[-2].split()[0] == "mlp-z2"  # sorted by fid
    assert lines[-1] == f"wrote {tmp_path / 'out' / 'sweep.png'} (3 experiments)"


def test_missing_columns_are_one_clear_error():
    table = plot_sweep.experiments_table(RECORDS)
    with pytest.raises(VaelabError, match="no experiments with fid_gmm in `dvc exp show`"):
        plot_sweep.sweep_frame(table, "latent_dim", ["fid_gmm"], GROUP)


def test_seed_sweep_reports_mean_and_sample_std_over_the_named_runs(tmp_path, capsys):
    from scripts import seed_sweep

    runs = [state(c * 40, f"sweep-seed{seed}", "conv", 16, fid=fid, timestamp=f"2026-11-23T1{seed}:00:00")
            for c, seed, fid in (("1", 0, 30.0), ("2", 1, 32.0), ("3", 2, 34.0))]
    records = [state("a" * 40, "main", "mlp", 2, fid=10.0, experiments=[exp(r) for r in runs])]
    saved = tmp_path / "exp.json"
    saved.write_text(json.dumps(records))
    seed_sweep.main(["--seeds", "0,1,2", "--metrics", "fid,recall", "--no-run", "--json", str(saved)])
    out = capsys.readouterr().out.splitlines()
    assert out == ["fid: 32 ± 2 (mean ± std over 3 seeds)", "recall: 0.0625 ± 0 (mean ± std over 3 seeds)"]
    with pytest.raises(VaelabError, match="no finished experiment named sweep-seed3"):
        seed_sweep.main(["--seeds", "0,3", "--metrics", "fid", "--no-run", "--json", str(saved)])
    with pytest.raises(VaelabError, match="at least two different seeds"):
        seed_sweep.main(["--seeds", "1", "--metrics", "fid", "--no-run", "--json", str(saved)])


def test_seed_sweep_runs_every_seed_from_the_sweeps_own_params(tmp_path, monkeypatch, capsys):
    """DVC applies each finished experiment's params to the workspace; the next seed must start from
    the sweep's params.yaml again, or its `-S +key=value` fails on the key the last one added."""
    from scripts import seed_sweep

    params = tmp_path / "params.yaml"
    params.write_text("seed: 42\nlatent_dim: 16\n")
    seen = []

    def fake_dvc(command):
        seen.append((command[command.index("-n") + 1], params.read_text()))
        params.write_text(params.read_text().replace("seed: 42", "seed: 9") + "gamma: learned\n")  # as DVC applies
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(seed_sweep.subprocess, "run", fake_dvc)
    seed_sweep.run_seeds([0, 1, 2], ["s-seed0", "s-seed1", "s-seed2"], ["+gamma=learned"], ["evaluate@mnist"], params)
    assert seen == [(f"s-seed{k}", "seed: 42\nlatent_dim: 16\n") for k in range(3)]
    assert params.read_text() == "seed: 9\nlatent_dim: 16\ngamma: learned\n"  # the last seed's, as DVC leaves it
    printed = capsys.readouterr().out.splitlines()
    assert printed[1] == "seed 1: dvc exp run -n s-seed1 -S seed=1 -S +gamma=learned evaluate@mnist"
    with pytest.raises(VaelabError, match=r"absent.yaml not found in .*; run the sweep from the project's root"):
        seed_sweep.run_seeds([0, 1], ["a", "b"], [], [], tmp_path / "absent.yaml")
