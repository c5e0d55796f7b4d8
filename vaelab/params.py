"""Load and validate ``params.yaml``: the one place that knows what a valid parameter is.

Every stage calls :func:`load_params` before doing any work, so a bad value fails fast with
one :class:`~vaelab.errors.VaelabError` naming the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from vaelab.errors import VaelabError
from vaelab.features import NETWORKS as FID_NETWORKS
from vaelab.features import PRECISIONS as FID_PRECISIONS

KINDS = ("mnist", "fashion_mnist", "cifar10", "caltech101", "image_folder")
# Kinds whose images are resized to `image_size` and split by `test_fraction`.
RESIZED_KINDS = ("caltech101", "image_folder")
ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass(frozen=True)
class DatasetParams:
    """Settings of one entry under ``datasets:`` (its ``data`` and ``model`` parts, flattened)."""

    name: str
    kind: str
    architecture: str = "mlp"
    likelihood: str = "bernoulli"
    image_size: int = 64
    test_fraction: float = 0.2
    path: str | None = None  # image_folder only


@dataclass(frozen=True)
class ConvParams:
    filters: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.0


@dataclass(frozen=True)
class FidParams:
    network: str = "inception2015"
    num_samples: int = 10000
    batch_size: int = 100
    image_size: int = 299
    precision: str = "float32"


@dataclass(frozen=True)
class GmmParams:
    components: int = 10


@dataclass(frozen=True)
class PlotParams:
    tsne: bool = False
    num_latent_points: int = 10000


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``, validated."""

    seed: int
    latent_dim: int
    hidden_dim: int
    epochs: int
    batch_size: int
    learning_rate: float
    beta: float
    datasets: dict[str, DatasetParams]
    mixed_precision: bool = False
    conv: ConvParams = field(default_factory=ConvParams)
    fid: FidParams = field(default_factory=FidParams)
    gmm: GmmParams = field(default_factory=GmmParams)
    plots: PlotParams = field(default_factory=PlotParams)

    def dataset(self, name: str) -> DatasetParams:
        """The entry ``datasets.<name>``; an unknown name is a :class:`VaelabError`."""
        if name not in self.datasets:
            raise VaelabError(
                f"unknown dataset {name!r}: params.yaml defines {sorted(self.datasets)}; "
                f"add an entry under 'datasets:' or pick one of those"
            )
        return self.datasets[name]


def _fail(key: str, value: Any, allowed: str) -> VaelabError:
    return VaelabError(f"params.yaml: {key} = {value!r} is invalid; allowed: {allowed}")


def _int(raw: Mapping[str, Any], key: str, prefix: str = "", minimum: int = 1, default: Any = None) -> int:
    value = raw.get(key, default)
    name = prefix + key
    if value is None:
        raise VaelabError(f"params.yaml: {name} is missing; set it to an integer >= {minimum}")
    # bool is an int subclass in Python; `latent_dim: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, f"an integer >= {minimum}")
    if value < minimum:
        raise _fail(name, value, f"an integer >= {minimum}")
    return value


def _float(raw: Mapping[str, Any], key: str, prefix: str = "", *, low: float, high: float | None = None,
           low_inclusive: bool = False, default: Any = None) -> float:
    value = raw.get(key, default)
    name = prefix + key
    bounds = f"a number {'>=' if low_inclusive else '>'} {low}" + (f" and < {high}" if high is not None else "")
    if value is None:
        raise VaelabError(f"params.yaml: {name} is missing; set it to {bounds}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, value, bounds)
    value = float(value)
    too_low = value < low if low_inclusive else value <= low
    if too_low or (high is not None and value >= high) or value != value:
        raise _fail(name, value, bounds)
    return value


def _choice(raw: Mapping[str, Any], key: str, choices: tuple[str, ...], prefix: str = "", default: Any = None) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise _fail(prefix + key, value, " | ".join(choices))
    return value


def _bool(raw: Mapping[str, Any], key: str, prefix: str = "", default: bool = False) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise _fail(prefix + key, value, "true | false")
    return value


def _section(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise _fail(key, value, "a mapping of settings")
    return value


def _check_keys(section: Mapping[str, Any], allowed: set[str], prefix: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise VaelabError(
            f"params.yaml: unknown key {prefix}{unknown[0]}; allowed keys: {', '.join(sorted(allowed))}"
        )


def _dataset(name: str, raw: Any) -> DatasetParams:
    if not isinstance(raw, Mapping):
        raise _fail(f"datasets.{name}", raw, "a mapping with 'data' (and optionally 'model') settings")
    _check_keys(raw, {"data", "model"}, f"datasets.{name}.")
    data, model = raw.get("data"), raw.get("model") or {}
    if not isinstance(data, Mapping):
        raise _fail(f"datasets.{name}.data", data, "a mapping with at least 'kind'")
    if not isinstance(model, Mapping):
        raise _fail(f"datasets.{name}.model", model, "a mapping with 'architecture' and 'likelihood'")
    data_prefix, model_prefix = f"datasets.{name}.data.", f"datasets.{name}.model."
    _check_keys(data, {"kind", "image_size", "test_fraction", "path"}, data_prefix)
    _check_keys(model, {"architecture", "likelihood"}, model_prefix)
    kind = _choice(data, "kind", KINDS, data_prefix)
    path = data.get("path")
    if kind == "image_folder":
        if not isinstance(path, str) or not path:
            raise _fail(data_prefix + "path", path, "a folder with one sub-folder of images per class")
    elif path is not None:
        raise _fail(data_prefix + "path", path, "only datasets of kind image_folder take a path")
    if kind not in RESIZED_KINDS:
        for key in ("image_size", "test_fraction"):
            if key in data:
                raise _fail(data_prefix + key, data[key],
                            f"nothing: {kind} ships fixed image sizes and splits; only "
                            f"{' and '.join(RESIZED_KINDS)} take {key}")
    return DatasetParams(
        name=name,
        kind=kind,
        architecture=_choice(model, "architecture", ARCHITECTURES, model_prefix, default="mlp"),
        likelihood=_choice(model, "likelihood", LIKELIHOODS, model_prefix, default="bernoulli"),
        image_size=_int(data, "image_size", data_prefix, minimum=8, default=64),
        test_fraction=_float(data, "test_fraction", data_prefix, low=0.0, high=1.0, default=0.2),
        path=path,
    )


def parse_params(raw: Any) -> Params:
    """Validate the parsed YAML mapping ``raw`` and return typed :class:`Params`."""
    if not isinstance(raw, Mapping):
        raise VaelabError(f"params.yaml must be a mapping of settings, got {type(raw).__name__}")
    _check_keys(raw, {"seed", "latent_dim", "hidden_dim", "epochs", "batch_size", "learning_rate",
                      "beta", "mixed_precision", "datasets", "conv", "fid", "gmm", "plots"}, "")
    datasets_raw = raw.get("datasets")
    if not isinstance(datasets_raw, Mapping) or not datasets_raw:
        raise _fail("datasets", datasets_raw, "a non-empty mapping of dataset name to settings")
    for name in datasets_raw:
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise _fail("datasets", name, "names of letters, digits, '_' and '-'")

    conv_raw = _section(raw, "conv")
    _check_keys(conv_raw, {"filters", "dropout"}, "conv.")
    filters = conv_raw.get("filters", [32, 64, 128])
    if (not isinstance(filters, list) or not filters
            or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters)):
        raise _fail("conv.filters", filters, "a non-empty list of positive integers")

    fid_raw = _section(raw, "fid")
    _check_keys(fid_raw, {"network", "num_samples", "batch_size", "image_size", "precision"}, "fid.")
    fid_network = _choice(fid_raw, "network", FID_NETWORKS, "fid.", default="inception2015")
    fid_image_size = _int(fid_raw, "image_size", "fid.", minimum=75, default=299)
    if fid_network == "inception2015" and fid_image_size != 299:
        raise _fail("fid.image_size", fid_image_size, "299 with fid.network inception2015, whose graph takes "
                    "299 px only (other sizes: keras_imagenet or random)")
    gmm_raw = _section(raw, "gmm")
    _check_keys(gmm_raw, {"components"}, "gmm.")
    plots_raw = _section(raw, "plots")
    _check_keys(plots_raw, {"tsne", "num_latent_points"}, "plots.")
    tsne = _bool(plots_raw, "tsne", "plots.")

    return Params(
        seed=_int(raw, "seed", minimum=0),
        latent_dim=_int(raw, "latent_dim"),
        hidden_dim=_int(raw, "hidden_dim"),
        epochs=_int(raw, "epochs"),
        batch_size=_int(raw, "batch_size"),
        learning_rate=_float(raw, "learning_rate", low=0.0),
        beta=_float(raw, "beta", low=0.0, low_inclusive=True, default=1.0),
        datasets={name: _dataset(name, value) for name, value in datasets_raw.items()},
        mixed_precision=_bool(raw, "mixed_precision"),
        conv=ConvParams(
            filters=tuple(filters),
            dropout=_float(conv_raw, "dropout", "conv.", low=0.0, high=1.0, low_inclusive=True, default=0.0),
        ),
        fid=FidParams(
            network=fid_network,
            num_samples=_int(fid_raw, "num_samples", "fid.", minimum=2, default=10000),
            batch_size=_int(fid_raw, "batch_size", "fid.", default=100),
            image_size=fid_image_size,
            precision=_choice(fid_raw, "precision", FID_PRECISIONS, "fid.", default="float32"),
        ),
        gmm=GmmParams(components=_int(gmm_raw, "components", "gmm.", default=10)),
        plots=PlotParams(
            tsne=tsne,
            num_latent_points=_int(plots_raw, "num_latent_points", "plots.", default=10000),
        ),
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``. Raises :class:`VaelabError` for a missing file, bad YAML or bad values."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise VaelabError(f"{path} not found; run from the project root or pass --params") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise VaelabError(f"{path} is not valid YAML ({str(error).splitlines()[0]}); fix its syntax") from None
    return parse_params(raw)
