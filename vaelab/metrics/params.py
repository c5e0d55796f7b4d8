"""FID's knobs: ``fid`` (reference_stats, evaluate)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from vaelab.core.errors import VaelabError
from vaelab.core.schema import invalid, knob, parse_section, section

FID_NETWORKS = ("inception2015", "keras_imagenet", "random")
FID_PRECISIONS = ("float32", "bfloat16")
FID_NATIVE_SIZE = 299  # the 2015 graph's only input size
FID_MIN_SIZE = 75  # keras.applications.InceptionV3's smallest input


@dataclass(frozen=True)
class FidParams:
    network: str = knob("inception2015", "choice", "the feature network (vaelab.metrics.features)", choices=FID_NETWORKS)
    num_samples: int = knob(5000, "int", "generated images (and reconstructions) per FID; below ~2048 biased", low=2)
    batch_size: int = knob(50, "int", "images per Inception batch (the 299-px activations dominate memory)", low=1)
    image_size: int = knob(FID_NATIVE_SIZE, "int", "the network's input size", low=FID_MIN_SIZE)
    precision: str = knob("float32", "choice", "the network's compute precision", choices=FID_PRECISIONS)


def fid_params(raw: Mapping[str, Any]) -> FidParams:
    """``fid`` of the top-level mapping ``raw``, checked; the 2015 graph takes 299 px only."""
    return _checked(parse_section(FidParams, section(raw, "fid"), "fid."))


def check_fid_network(network: str, image_size: int, precision: str = "float32") -> None:
    """The same rules for a feature network asked for in code (:func:`vaelab.metrics.features.build_feature_extractor`):
    the same one-line error, without naming params.yaml."""
    try:
        fid_params({"fid": {"network": network, "image_size": image_size, "precision": precision}})
    except VaelabError as error:
        raise VaelabError(str(error).removeprefix("params.yaml: ")) from None


def _checked(fid: FidParams) -> FidParams:
    if fid.network == "inception2015" and fid.image_size != FID_NATIVE_SIZE:
        raise invalid("fid.image_size", fid.image_size,
                      f"{FID_NATIVE_SIZE} with fid.network inception2015, whose graph takes {FID_NATIVE_SIZE} px "
                      f"only (other sizes: keras_imagenet or random)")
    return fid
