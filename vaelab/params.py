"""Load and validate ``params.yaml``: the one place that knows what a valid parameter is.

Every stage calls :func:`load_params` before doing any work, so a bad value fails fast with
one :class:`~vaelab.errors.VaelabError` naming the key, the value and what is allowed. The
allowed values are declared here (dataset kinds come from the registry, :mod:`vaelab.kinds`);
the defaults are the dataclass fields' own, and the allowed keys of each section are its fields.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from vaelab.errors import VaelabError
from vaelab.kinds import KINDS

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
FID_NETWORKS = ("inception2015", "keras_imagenet", "random")
FID_PRECISIONS = ("float32", "bfloat16")
FID_NATIVE_SIZE = 299  # the 2015 graph's only input size
FID_MIN_SIZE = 75  # keras.applications.InceptionV3's smallest input


def _data(default: Any) -> Any:
    return field(default=default, metadata={"section": "data"})


def _model(default: Any) -> Any:
    return field(default=default, metadata={"section": "model"})


@dataclass(frozen=True)
class DatasetParams:
    """Settings of one entry under ``datasets:`` (its ``data`` and ``model`` parts, flattened)."""

    name: str
    kind: str = _data(None)
    path: str | None = _data(None)  # kinds that take a path (image_folder) only
    image_size: int = _data(64)  # resized kinds only
    test_fraction: float = _data(0.2)  # resized kinds only
    channels: int | str = _data("auto")  # resized kinds only: auto | 1 | 3
    architecture: str = _model("mlp")
    likelihood: str = _model("bernoulli")


@dataclass(frozen=True)
class ConvParams:
    filters: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.0


@dataclass(frozen=True)
class FidParams:
    network: str = "inception2015"
    num_samples: int = 10000
    batch_size: int = 50  # the 299-px activations dominate memory: README, "What a run costs"
    image_size: int = FID_NATIVE_SIZE
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
    datasets: dict[str, DatasetParams]
    beta: float = 1.0
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


def fid_settings_problem(network: str, image_size: int, precision: str) -> str | None:
    """What is wrong with these FID network settings (``fid.<key> = <value> is invalid; ...``), or None."""
    if network not in FID_NETWORKS:
        return f"fid.network = {network!r} is invalid; allowed: {' | '.join(FID_NETWORKS)}"
    if precision not in FID_PRECISIONS:
        return f"fid.precision = {precision!r} is invalid; allowed: {' | '.join(FID_PRECISIONS)}"
    if network == "inception2015" and image_size != FID_NATIVE_SIZE:
        return (f"fid.image_size = {image_size!r} is invalid; allowed: {FID_NATIVE_SIZE} with fid.network "
                f"inception2015, whose graph takes {FID_NATIVE_SIZE} px only (other sizes: keras_imagenet or random)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < FID_MIN_SIZE:
        return f"fid.image_size = {image_size!r} is invalid; allowed: an integer >= {FID_MIN_SIZE} (InceptionV3's smallest input)"
    return None


def _default(cls: type, key: str) -> Any:
    """The default of field ``key`` of dataclass ``cls`` (None where it has none: required)."""
    found = {f.name: f for f in dataclasses.fields(cls)}[key]
    if found.default is not dataclasses.MISSING:
        return found.default
    return None


def _keys(cls: type, section: str | None = None) -> set[str]:
    """The keys a section may hold: the fields of ``cls`` (of one ``section`` of DatasetParams)."""
    return {f.name for f in dataclasses.fields(cls) if section is None or f.metadata.get("section") == section}


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


def _bool(raw: Mapping[str, Any], key: str, prefix: str = "", default: Any = None) -> bool:
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
    _check_keys(data, _keys(DatasetParams, "data"), data_prefix)
    _check_keys(model, _keys(DatasetParams, "model"), model_prefix)
    kind = KINDS[_choice(data, "kind", tuple(KINDS), data_prefix)]
    path = data.get("path")
    if kind.takes_path:
        if not isinstance(path, str) or not path:
            raise _fail(data_prefix + "path", path, "a folder with one sub-folder of images per class")
    elif path is not None:
        takers = " and ".join(k.name for k in KINDS.values() if k.takes_path)
        raise _fail(data_prefix + "path", path, f"only datasets of kind {takers} take a path")
    if not kind.resized:
        resized = " and ".join(k.name for k in KINDS.values() if k.resized)
        for key in ("image_size", "test_fraction", "channels"):
            if key in data:
                raise _fail(data_prefix + key, data[key],
                            f"nothing: {kind.name} ships fixed image sizes and splits; only {resized} take {key}")
    d = lambda key: _default(DatasetParams, key)  # noqa: E731
    return DatasetParams(
        name=name,
        kind=kind.name,
        path=path,
        image_size=_int(data, "image_size", data_prefix, minimum=8, default=d("image_size")),
        test_fraction=_float(data, "test_fraction", data_prefix, low=0.0, high=1.0, default=d("test_fraction")),
        channels=_channels(data, data_prefix, d("channels")),
        architecture=_choice(model, "architecture", ARCHITECTURES, model_prefix, default=d("architecture")),
        likelihood=_choice(model, "likelihood", LIKELIHOODS, model_prefix, default=d("likelihood")),
    )


CHANNELS = ("auto", 1, 3)


def _channels(data: Mapping[str, Any], prefix: str, default: Any) -> int | str:
    value = data.get("channels", default)
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value not in CHANNELS):
        raise _fail(prefix + "channels", value, " | ".join(map(str, CHANNELS)))
    return value


def parse_params(raw: Any) -> Params:
    """Validate the parsed YAML mapping ``raw`` and return typed :class:`Params`."""
    if not isinstance(raw, Mapping):
        raise VaelabError(f"params.yaml must be a mapping of settings, got {type(raw).__name__}")
    _check_keys(raw, _keys(Params), "")
    datasets_raw = raw.get("datasets")
    if not isinstance(datasets_raw, Mapping) or not datasets_raw:
        raise _fail("datasets", datasets_raw, "a non-empty mapping of dataset name to settings")
    for name in datasets_raw:
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise _fail("datasets", name, "names of letters, digits, '_' and '-'")

    conv_raw = _section(raw, "conv")
    _check_keys(conv_raw, _keys(ConvParams), "conv.")
    filters = conv_raw.get("filters", list(_default(ConvParams, "filters")))
    if (not isinstance(filters, list) or not filters
            or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in filters)):
        raise _fail("conv.filters", filters, "a non-empty list of positive integers")

    fid_raw = _section(raw, "fid")
    _check_keys(fid_raw, _keys(FidParams), "fid.")
    fid = lambda key: _default(FidParams, key)  # noqa: E731
    fid_network = _choice(fid_raw, "network", FID_NETWORKS, "fid.", default=fid("network"))
    fid_image_size = _int(fid_raw, "image_size", "fid.", minimum=FID_MIN_SIZE, default=fid("image_size"))
    fid_precision = _choice(fid_raw, "precision", FID_PRECISIONS, "fid.", default=fid("precision"))
    problem = fid_settings_problem(fid_network, fid_image_size, fid_precision)
    if problem:
        raise VaelabError(f"params.yaml: {problem}")
    gmm_raw = _section(raw, "gmm")
    _check_keys(gmm_raw, _keys(GmmParams), "gmm.")
    plots_raw = _section(raw, "plots")
    _check_keys(plots_raw, _keys(PlotParams), "plots.")

    top = lambda key: _default(Params, key)  # noqa: E731
    return Params(
        seed=_int(raw, "seed", minimum=0),
        latent_dim=_int(raw, "latent_dim"),
        hidden_dim=_int(raw, "hidden_dim"),
        epochs=_int(raw, "epochs"),
        batch_size=_int(raw, "batch_size"),
        learning_rate=_float(raw, "learning_rate", low=0.0),
        beta=_float(raw, "beta", low=0.0, low_inclusive=True, default=top("beta")),
        datasets={name: _dataset(name, value) for name, value in datasets_raw.items()},
        mixed_precision=_bool(raw, "mixed_precision", default=top("mixed_precision")),
        conv=ConvParams(
            filters=tuple(filters),
            dropout=_float(conv_raw, "dropout", "conv.", low=0.0, high=1.0, low_inclusive=True,
                           default=_default(ConvParams, "dropout")),
        ),
        fid=FidParams(
            network=fid_network,
            num_samples=_int(fid_raw, "num_samples", "fid.", minimum=2, default=fid("num_samples")),
            batch_size=_int(fid_raw, "batch_size", "fid.", default=fid("batch_size")),
            image_size=fid_image_size,
            precision=fid_precision,
        ),
        gmm=GmmParams(components=_int(gmm_raw, "components", "gmm.", default=_default(GmmParams, "components"))),
        plots=PlotParams(
            tsne=_bool(plots_raw, "tsne", "plots.", default=_default(PlotParams, "tsne")),
            num_latent_points=_int(plots_raw, "num_latent_points", "plots.",
                                   default=_default(PlotParams, "num_latent_points")),
        ),
    )


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading numbers as YAML 1.2 (and DVC, which writes params.yaml with
    ruamel.yaml) does: ``1e-4`` is a float, where YAML 1.1 wants ``1.0e-4`` and reads ``1e-4``
    as a string."""


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(text: str) -> Any:
    """Parse ``text`` as :class:`_Yaml12Loader` does (safe: no Python objects)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``path``. Raises :class:`VaelabError` for a missing file, bad YAML or bad values."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise VaelabError(f"{path} not found; run from the project root or pass --params") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as error:
        raise VaelabError(f"{path} is not valid YAML ({str(error).splitlines()[0]}); fix its syntax") from None
    return parse_params(raw)
