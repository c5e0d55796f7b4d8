"""Reading ``params.yaml``: the file, its top level, a dataset's entry, and the knobs every phase shares.

Each phase declares and checks its own sections (``vaelab/data/params.py``,
``vaelab/model/params.py``, ``vaelab/training/params.py``, ``vaelab/metrics/params.py``,
``vaelab/figures/params.py``), so a stage depends on the schemas of what it reads and on this
small module, not on every knob's: a new model setting re-runs no data stage. This module holds
what all of them share: reading the file (numbers as YAML 1.2 reads them, as DVC does), the
names of the top-level keys (so a misspelt one fails in every stage), a dataset's entry, and
the shared knobs: ``seed`` (the model's), ``data_seed`` (the data's, so that a seed sweep
re-runs neither the data stages nor the reference statistics) and ``batch_size``; and the one
rule for a knob that a dataset's entry may also set (:func:`per_dataset`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from vaelab.core.errors import VaelabError
from vaelab.core.schema import REQUIRED, check_keys, invalid, knob, parse_section

# Every top-level key of params.yaml, and the phase module that declares it. A test checks this
# against the phases' schemas.
TOP_LEVEL_KEYS = {
    "seed": "vaelab.core.params", "data_seed": "vaelab.core.params", "batch_size": "vaelab.core.params",
    "latent_dim": "vaelab.model.params", "hidden_dim": "vaelab.model.params", "conv": "vaelab.model.params",
    "gmm": "vaelab.model.density", "two_stage": "vaelab.model.two_stage",
    "epochs": "vaelab.training.params", "learning_rate": "vaelab.training.params", "beta": "vaelab.training.params",
    "mixed_precision": "vaelab.training.params",
    "fid": "vaelab.metrics.params", "plots": "vaelab.figures.params",
    "datasets": "vaelab.core.params",  # each entry's `data` is vaelab.data.params', its `model` vaelab.model.params'
}
DATASET_KEYS = ("data", "model")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedParams:
    """The knobs of every phase."""

    seed: int = knob(REQUIRED, "int", "the model's seed: initialisation, noise, prior and FID samples", low=0)
    batch_size: int = knob(REQUIRED, "int", "images per training step (and per encoding batch)", low=1)
    data_seed: int = knob(REQUIRED, "int", "the data's seed: train/test splits of the resized kinds, the reference "
                                           "statistics' feature sample, the random FID network", low=0)


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


def check_top_level(raw: Any) -> Mapping[str, Any]:
    """``raw`` (parsed YAML) as the top-level mapping: every key known, ``datasets`` a non-empty
    mapping of well-formed names."""
    if not isinstance(raw, Mapping):
        raise VaelabError(f"params.yaml must be a mapping of settings, got {type(raw).__name__}")
    check_keys(raw, TOP_LEVEL_KEYS, "")
    datasets = raw.get("datasets")
    if not isinstance(datasets, Mapping) or not datasets:
        raise invalid("datasets", datasets, "a non-empty mapping of dataset name to settings")
    for name in datasets:
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise invalid("datasets", name, "names of letters, digits, '_' and '-'")
    return raw


def read_params(path: str | Path = "params.yaml") -> Mapping[str, Any]:
    """The top-level mapping of ``path`` (:func:`check_top_level`). A missing file, bad YAML or an
    unknown key is a :class:`VaelabError`; each phase checks its own sections."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise VaelabError(f"{path} not found; run from the project root or pass --params") from None
    try:
        raw = read_yaml(text)
    except yaml.YAMLError as error:
        raise VaelabError(f"{path} is not valid YAML ({str(error).splitlines()[0]}); fix its syntax") from None
    return check_top_level(raw)


def dataset_entry(raw: Mapping[str, Any], name: str, part: str) -> Mapping[str, Any]:
    """The ``data`` or ``model`` part (``part``) of ``datasets.<name>``; an unknown name is an
    error listing the known ones."""
    datasets = raw["datasets"]
    if name not in datasets:
        raise VaelabError(f"unknown dataset {name!r}: params.yaml defines {sorted(datasets)}; "
                          f"add an entry under 'datasets:' or pick one of those")
    entry = datasets[name]
    if not isinstance(entry, Mapping):
        raise invalid(f"datasets.{name}", entry, "a mapping with 'data' (and optionally 'model') settings")
    check_keys(entry, set(DATASET_KEYS), f"datasets.{name}.")
    value = entry.get(part)
    if part == "data" and not isinstance(value, Mapping):
        raise invalid(f"datasets.{name}.data", value, "a mapping with at least 'kind'")
    if value is not None and not isinstance(value, Mapping):
        raise invalid(f"datasets.{name}.{part}", value, "a mapping of settings")
    return value or {}


def shared_params(raw: Mapping[str, Any]) -> SharedParams:
    return parse_section(SharedParams, raw, whole=False)


def per_dataset(key: str, top: Any, own: Any, name: str) -> Any:
    """The value of knob ``key`` for dataset ``name``: the top-level ``key`` when it is a value
    (it means every dataset), else (``null`` or absent) the dataset's own
    ``datasets.<name>.model.<key>``; neither is an error naming both. A top-level value that
    replaces a different value of the dataset's own is logged, never silent."""
    if top is None:
        if own is None:
            raise VaelabError(f"params.yaml: {key} is null (each dataset's own) but datasets.{name}.model.{key} "
                              f"is missing; set datasets.{name}.model.{key}, or a top-level {key} for every dataset")
        return own
    if own is not None and own != top:
        log.info("%s: the top-level %s = %s replaces datasets.%s.model.%s = %s (set %s: null to use each "
                 "dataset's own)", name, key, top, name, key, own, key)
    return top
