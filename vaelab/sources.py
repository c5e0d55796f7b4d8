"""Where each dataset comes from: the one table of canonical URLs and pinned checksums.

Each file lists mirrors tried in order. Checksums are the values the dataset authors (or the
loaders that pinned them first: torchvision, TFDS) published; ``algorithm:hexdigest``.

Tests feed generated archives through the same download code with :func:`load_source_table`
and an explicit table file (env var ``VAELAB_SOURCES``); verification is never skipped, the
table just names other checksums, and a run that uses one says so loudly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from vaelab.errors import VaelabError

SOURCES_ENV = "VAELAB_SOURCES"


@dataclass(frozen=True)
class SourceFile:
    """One file to fetch: its name on disk, mirrors to try, and its pinned checksum."""

    filename: str
    urls: tuple[str, ...]
    checksum: str  # "md5:<hex>" or "sha256:<hex>"


_MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
_FASHION_MIRRORS = (
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)


def _idx_files(mirrors: tuple[str, ...], checksums: dict[str, str]) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(name, tuple(m + name for m in mirrors), digest) for name, digest in checksums.items())


SOURCES: dict[str, tuple[SourceFile, ...]] = {
    "mnist": _idx_files(_MNIST_MIRRORS, {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "sha256:8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "sha256:f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    }),
    "fashion_mnist": _idx_files(_FASHION_MIRRORS, {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    }),
    "cifar10": (
        SourceFile(
            "cifar-10-binary.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
            "md5:c32a1d4ab5d03f1284b67883e8d87530",
        ),
    ),
    # CaltechDATA's zip wraps the original 101_ObjectCategories.tar.gz, whose own md5
    # (CALTECH101_INNER_CHECKSUM) is checked again when the zip is read.
    "caltech101": (
        SourceFile(
            "caltech-101.zip",
            ("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip?download=1",),
            "sha256:331234750fc7f77520e50d9565e8b6907b03565e30320da1401130db08c61f91",
        ),
    ),
}
CALTECH101_INNER_CHECKSUM = "md5:b224c7392d521a49829488ab0f1120d9"

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer",
                "dog", "frog", "horse", "ship", "truck"),
}


def load_source_table(env: dict[str, str] | None = None) -> dict[str, tuple[SourceFile, ...]]:
    """The canonical :data:`SOURCES`, or the table in the JSON file named by ``VAELAB_SOURCES``.

    The JSON maps kind -> list of ``{"filename", "urls", "checksum"}``; kinds it leaves out
    keep their canonical entries. Used by tests to feed generated archives (with their own
    real checksums) through the real download and verification code.
    """
    env = os.environ if env is None else env
    table_path = env.get(SOURCES_ENV)
    if not table_path:
        return dict(SOURCES)
    try:
        raw = json.loads(Path(table_path).read_text())
        override = {
            kind: tuple(SourceFile(f["filename"], tuple(f["urls"]), f["checksum"]) for f in files)
            for kind, files in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise VaelabError(
            f"{SOURCES_ENV}={table_path!r} is not a readable source table ({error}); unset it to use the canonical sources"
        ) from None
    return {**SOURCES, **override}


def save_source_table(path: str | Path, table: dict[str, tuple[SourceFile, ...]]) -> Path:
    """Write ``table`` as a ``VAELAB_SOURCES`` JSON file that :func:`load_source_table` reads back."""
    raw = {kind: [{"filename": f.filename, "urls": list(f.urls), "checksum": f.checksum} for f in files]
           for kind, files in table.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(raw, indent=2))
    return path
