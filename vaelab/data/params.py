"""The data phase's knobs: ``datasets.<name>.data`` (download, preprocess)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from vaelab.core.params import dataset_entry
from vaelab.core.schema import REQUIRED, invalid, knob, parse_section
from vaelab.data.kinds import KINDS

CHANNELS = ("auto", 1, 3)


@dataclass(frozen=True)
class DataParams:
    """One dataset's ``data`` settings. ``image_size``, ``test_fraction`` and ``channels`` apply to
    the kinds that are resized (caltech101, image_folder); the others ship fixed sizes and splits."""

    name: str
    kind: str = knob(REQUIRED, "choice", "the dataset kind (vaelab.data.kinds)", choices=tuple(KINDS))
    path: str | None = knob(None, "text", "a folder with one sub-folder of images per class")
    image_size: int = knob(64, "int", "side of the centre-cropped, resized images", low=8)
    test_fraction: float = knob(0.2, "float", "share of each class held out as the test split",
                                low=0.0, high=1.0, low_inclusive=False)
    channels: int | str = knob("auto", "choice", "auto: 1 where every image is grey, else 3", choices=CHANNELS)


def data_params(raw: Mapping[str, Any], name: str) -> DataParams:
    """``datasets.<name>.data`` of the top-level mapping ``raw``, checked, with the kind's own
    rules: a path for the kinds that take one and only for them; sizes, fractions and channels
    only for the kinds that are resized."""
    data = dataset_entry(raw, name, "data")
    prefix = f"datasets.{name}.data."
    params = parse_section(DataParams, data, prefix, name=name)
    kind = KINDS[params.kind]
    if kind.takes_path and params.path is None:
        raise invalid(prefix + "path", None, "a folder with one sub-folder of images per class")
    if not kind.takes_path and params.path is not None:
        takers = " and ".join(k.name for k in KINDS.values() if k.takes_path)
        raise invalid(prefix + "path", params.path, f"only datasets of kind {takers} take a path")
    if not kind.resized:
        resized = " and ".join(k.name for k in KINDS.values() if k.resized)
        for key in ("image_size", "test_fraction", "channels"):
            if key in data:
                raise invalid(prefix + key, data[key],
                              f"nothing: {kind.name} ships fixed image sizes and splits; only {resized} take {key}")
    return params
