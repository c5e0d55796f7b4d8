"""Make an offline MNIST mirror from the 10,000 real test digits alone, for docs/results.md.

The shared folder beside the checkout holds only MNIST's canonical test files. This splits
them into 8,000 "train" and 2,000 "test" digits (a fixed split, stratified by label and
seeded), writes them as the four canonical idx ``.gz`` files into ``OUT/mnist/`` and a source
table with their real sha256 checksums, so the pipeline runs on real digits offline:

    python -m scripts.mnist_t10k_mirror --shared ../shared/data/mnist-t10k --out /tmp/t10k-mirror
    export VAELAB_DATA_MIRROR=/tmp/t10k-mirror VAELAB_SOURCES=/tmp/t10k-mirror/sources.json
    dvc exp run -S fid.num_samples=5000 ...   # docs/results.md (the commands of each row)

The input files are first checked against the canonical checksums, ``vaelab/data/sources/mnist.toml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


from vaelab.core.cli import run_cli
from vaelab.data.download import checksum_matches, local_source
from vaelab.core.errors import VaelabError
from vaelab.data.images import stratified_split
from vaelab.data.kinds import IDX_TEST, IDX_TRAIN, canonical_sources, save_source_table
from vaelab.data.dataset_files import write_idx_dataset
from vaelab.data.preprocess import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx

NAMES = (*IDX_TRAIN, *IDX_TEST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, required=True, help="folder with MNIST's t10k idx .gz files")
    parser.add_argument("--out", type=Path, required=True, help="mirror folder to write")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    canonical = {f.filename: f.checksum for f in canonical_sources("mnist").files}
    for name in NAMES[2:]:
        ok, actual = checksum_matches(args.shared / name, canonical[name])
        if not ok:
            raise VaelabError(f"{args.shared / name}: checksum {actual} is not MNIST's {canonical[name]}")
    images = read_idx(args.shared / NAMES[2], IDX_IMAGES_MAGIC, "mnist")
    labels = read_idx(args.shared / NAMES[3], IDX_LABELS_MAGIC, "mnist")
    train, test = stratified_split(labels, args.test_fraction, args.seed)

    folder = args.out / "mnist"
    # Deterministic files: the same input gives the same checksums.
    paths = write_idx_dataset(folder, images[train], labels[train], images[test], labels[test])
    table = save_source_table(args.out / "sources.json", {"mnist": tuple(map(local_source, paths))})
    print(f"wrote {len(train)} train and {len(test)} test digits to {folder}, source table {table}")


if __name__ == "__main__":
    run_cli(main)
