"""params.yaml validation: every bad value is one VaelabError naming the key, value and what is allowed."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT
from vaelab.core.errors import VaelabError
from vaelab.params import load_params, parse_params


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def test_project_params_are_valid(raw):
    params = parse_params(raw)
    assert set(params.datasets) == {"mnist", "fashion_mnist", "cifar10", "caltech101"}
    caltech = params.dataset("caltech101").data
    assert (caltech.kind, caltech.image_size, caltech.test_fraction) == ("caltech101", 64, 0.2)
    assert params.dataset("mnist").model.choice.architecture == "infogan"
    assert params.dataset("cifar10").model.choice.gamma == "learned"  # read as the choice, not a number
    # Each dataset's own epochs give about the same number of steps; latent 16 with learned gamma
    # measured best on MNIST (docs/results.md), the colour sets keep Dai & Wipf's 64. The top-level
    # knobs are null: each dataset's own values rule.
    assert raw["latent_dim"] is None and raw["epochs"] is None
    assert {name: (entry.model.latent_dim, entry.train.epochs) for name, entry in params.datasets.items()} == {
        "mnist": (16, 5), "fashion_mnist": (16, 5), "cifar10": (64, 6), "caltech101": (64, 35)}
    assert {name: (entry.model.choice.likelihood, entry.model.choice.gamma) for name, entry in params.datasets.items()} == {
        name: ("gaussian", "learned") for name in params.datasets}
    assert params.fid.network == "inception2015" and params.fid.num_samples == 5000
    assert params.fid.precision == "float32" and params.fid.image_size == 299


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda r: r.update(latent_dim=0), "latent_dim = 0"),
        (lambda r: r.update(latent_dim="ten"), "latent_dim = 'ten'"),
        (lambda r: r.update(latent_dim=True), "latent_dim = True"),
        (lambda r: r.update(epochs=-3), "epochs = -3"),
        (lambda r: r["datasets"]["mnist"]["model"].pop("latent_dim"),
         "latent_dim is null (each dataset's own) but datasets.mnist.model.latent_dim is missing; set "
         "datasets.mnist.model.latent_dim, or a top-level latent_dim for every dataset"),
        (lambda r: r["datasets"]["cifar10"]["model"].pop("epochs"), "datasets.cifar10.model.epochs is missing"),
        (lambda r: r.update(learning_rate=0), "learning_rate = 0.0"),
        (lambda r: r.pop("batch_size"), "batch_size is missing"),
        (lambda r: r.pop("data_seed"), "data_seed is missing"),
        (lambda r: r.update(latnet_dim=2), "unknown key latnet_dim"),
        (lambda r: r["datasets"]["mnist"]["data"].update(kind="svhn"), "datasets.mnist.data.kind = 'svhn'"),
        (lambda r: r["datasets"]["mnist"]["model"].update(architecture="resnet"),
         "datasets.mnist.model.architecture = 'resnet'"),
        (lambda r: r["datasets"]["caltech101"]["data"].update(image_size=0), "datasets.caltech101.data.image_size = 0"),
        (lambda r: r["datasets"]["caltech101"]["model"].update(epochs=0),
         "datasets.caltech101.model.epochs = 0 is invalid; allowed: an integer >= 1"),
        (lambda r: r["datasets"]["cifar10"]["model"].update(latent_dim=1.5),
         "datasets.cifar10.model.latent_dim = 1.5 is invalid; allowed: an integer >= 1"),
        (lambda r: r["datasets"]["caltech101"]["data"].update(test_fraction=1.5),
         "datasets.caltech101.data.test_fraction = 1.5"),
        (lambda r: r["datasets"]["mnist"]["data"].update(image_size=64), "datasets.mnist.data.image_size = 64"),
        (lambda r: r["datasets"].update(photos={"data": {"kind": "image_folder"}}), "datasets.photos.data.path = None"),
        (lambda r: r["fid"].update(network="imagenet21k"), "fid.network = 'imagenet21k'"),
        (lambda r: r["fid"].update(weights="none"), "unknown key fid.weights"),
        (lambda r: r["fid"].update(image_size=150), "fid.image_size = 150 is invalid; allowed: 299 with fid.network "
                                                    "inception2015"),
        (lambda r: r["fid"].update(precision="half"), "fid.precision = 'half' is invalid; allowed: float32 | bfloat16"),
        (lambda r: r["conv"].update(filters=[32, 0]), "conv.filters = [32, 0]"),
        (lambda r: r.update(datasets={}), "datasets = {}"),
        (lambda r: r.update(mixed_precision="yes"), "mixed_precision = 'yes'"),
        (lambda r: r["plots"].update(tsne=1), "plots.tsne = 1"),
        (lambda r: r["gmm"].update(components=0), "gmm.components = 0"),
        (lambda r: r["datasets"]["caltech101"]["data"].update(channels=2),
         "datasets.caltech101.data.channels = 2 is invalid; allowed: auto | 1 | 3"),
        (lambda r: r["datasets"]["caltech101"]["data"].update(channels="grey"),
         "datasets.caltech101.data.channels = 'grey' is invalid; allowed: auto | 1 | 3"),
        (lambda r: r["datasets"]["mnist"]["data"].update(channels=1),
         "datasets.mnist.data.channels = 1 is invalid; allowed: nothing: mnist ships fixed image sizes"),
        (lambda r: r["gmm"].update(covariance="diag"), "unknown key gmm.covariance"),
        (lambda r: r["datasets"]["mnist"]["model"].update(gamma="fancy"),
         "datasets.mnist.model.gamma = 'fancy' is invalid; allowed: a number > 0 | learned"),
        (lambda r: r["datasets"]["mnist"]["model"].update(gamma=0), "datasets.mnist.model.gamma = 0.0 is invalid"),
    ],
)
def test_bad_values_name_key_and_value(raw, edit, needle):
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(VaelabError) as info:
        parse_params(bad)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_dataset_name_lists_the_known_ones(raw):
    with pytest.raises(VaelabError, match=r"unknown dataset 'svhn'.*'mnist'"):
        parse_params(raw).dataset("svhn")


def test_gamma_is_a_number_or_learned(raw):
    raw["datasets"]["mnist"]["model"].update(likelihood="gaussian", gamma="learned")
    raw["datasets"]["cifar10"]["model"].update(likelihood="gaussian", gamma=0.05)
    del raw["datasets"]["fashion_mnist"]["model"]["gamma"]
    params = parse_params(raw)
    assert params.dataset("mnist").model.choice.gamma == "learned"
    assert params.dataset("cifar10").model.choice.gamma == 0.05
    assert params.dataset("fashion_mnist").model.choice.gamma == 0.1  # the default


def test_image_folder_entry(raw):
    raw["datasets"]["photos"] = {
        "data": {"kind": "image_folder", "path": "some/folder", "image_size": 92, "test_fraction": 0.25},
        "model": {"architecture": "conv", "latent_dim": 32, "epochs": 20},
    }
    photos = parse_params(raw).dataset("photos")
    assert (photos.data.path, photos.data.image_size, photos.data.test_fraction, photos.model.choice.likelihood) == (
        "some/folder", 92, 0.25, "bernoulli")
    assert (photos.model.latent_dim, photos.train.epochs) == (32, 20)


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(VaelabError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("latent_dim: [1,\n")
    with pytest.raises(VaelabError, match="not valid YAML"):
        load_params(bad)


def test_numbers_are_read_as_yaml_1_2(tmp_path: Path) -> None:
    """`learning_rate: 1e-4`, as a user types it and as DVC (YAML 1.2) reads it, is a number; PyYAML's
    YAML 1.1 alone would read the string '1e-4' and refuse it."""
    text = (PROJECT_ROOT / "params.yaml").read_text().replace("learning_rate: 0.001", "learning_rate: 1e-4")
    assert "learning_rate: 1e-4" in text
    path = tmp_path / "params.yaml"
    path.write_text(text.replace("beta: 1.0 ", "beta: 5E-1 "))
    params = load_params(path)
    assert params.dataset("mnist").train.learning_rate == 1e-4 and params.dataset("mnist").train.beta == 0.5
    path.write_text(text.replace("learning_rate: 1e-4", "learning_rate: 1e"))
    with pytest.raises(VaelabError, match=r"learning_rate = '1e' is invalid"):
        load_params(path)


def test_every_top_level_key_has_one_schema():
    """core.params.TOP_LEVEL_KEYS names each top-level key's phase; each phase's schema declares exactly those."""
    import dataclasses
    import importlib

    from vaelab.core.params import TOP_LEVEL_KEYS
    from vaelab.core.schema import knobs

    declared: dict[str, str] = {}
    for module_name in set(TOP_LEVEL_KEYS.values()):
        module = importlib.import_module(module_name)
        for cls in vars(module).values():
            if dataclasses.is_dataclass(cls) and isinstance(cls, type) and cls.__module__ == module_name and knobs(cls):
                top = {"ConvParams": "conv", "GmmParams": "gmm", "FidParams": "fid", "PlotParams": "plots",
                       "TwoStageParams": "two_stage"}
                names = [top[cls.__name__]] if cls.__name__ in top else list(knobs(cls))
                if cls.__name__ in ("DataParams", "ModelChoice"):  # datasets.<name>.data / .model
                    names = ["datasets"]
                for name in names:
                    declared.setdefault(name, module_name if name != "datasets" else "vaelab.core.params")
    assert declared == TOP_LEVEL_KEYS


@pytest.mark.parametrize("stage_reads, key, value", [
    ("data", "latent_dim", 0),  # a model knob: no concern of the data stages
    ("fid", "epochs", -1),      # a training knob: no concern of the FID stages
])
def test_a_phase_checks_only_its_own_sections(raw, stage_reads, key, value):
    from vaelab.data.params import data_params
    from vaelab.metrics.params import fid_params

    raw[key] = value
    if stage_reads == "data":
        assert data_params(raw, "mnist").kind == "mnist"
    else:
        assert fid_params(raw).network == "inception2015"
    with pytest.raises(VaelabError, match=f"{key} = {value}"):
        parse_params(raw)


def test_a_top_level_number_means_every_dataset_and_says_so(raw, caplog):
    """`-S latent_dim=10`: every dataset's model has latent 10, its own value replaced in a log
    line; `null` gives each its own back; a dataset's own value moves that dataset alone."""
    raw.update(latent_dim=10, epochs=3)
    with caplog.at_level(logging.INFO, logger="vaelab.core.params"):
        params = parse_params(raw)
    assert {name: (entry.model.latent_dim, entry.train.epochs) for name, entry in params.datasets.items()} == {
        name: (10, 3) for name in ("mnist", "fashion_mnist", "cifar10", "caltech101")}
    assert ("caltech101: the top-level latent_dim = 10 replaces datasets.caltech101.model.latent_dim = 64 (set "
            "latent_dim: null to use each dataset's own)") in caplog.messages
    assert "cifar10: the top-level epochs = 3 replaces datasets.cifar10.model.epochs = 6 (set epochs: null to use " \
           "each dataset's own)" in caplog.messages
    assert len(caplog.messages) == 8  # two knobs x four datasets, each own value differs

    caplog.clear()
    raw.update(latent_dim=16, epochs=None)  # equal to MNIST's own: nothing replaced there
    raw["datasets"]["mnist"]["model"]["epochs"] = 7
    with caplog.at_level(logging.INFO, logger="vaelab.core.params"):
        params = parse_params(raw)
    assert {name: (entry.model.latent_dim, entry.train.epochs) for name, entry in params.datasets.items()} == {
        "mnist": (16, 7), "fashion_mnist": (16, 5), "cifar10": (16, 6), "caltech101": (16, 35)}
    assert sorted(m.split(":")[0] for m in caplog.messages) == ["caltech101", "cifar10"]
