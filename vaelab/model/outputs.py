"""The train stage's outputs, written by train and read by the fit, score and plot stages.

* the model folder ``models/<dataset>/``: ``encoder.keras`` and ``decoder.keras`` (plain Keras
  models: :mod:`vaelab.model.networks`), ``config.json`` (the :class:`~vaelab.model.networks.ArchConfig`),
  ``progress.npy`` (uint8 (epochs, 16, H, W, C): the fixed latent points decoded after every
  epoch) and ``progress_latents.npy`` (those points, float32 (16, latent_dim));
* the per-epoch history ``plots/<dataset>/history.csv``, columns :data:`HISTORY_COLUMNS`
  (nats per image; ``epoch`` 1-based).

Every writer writes atomically (:func:`vaelab.core.io.atomic_path`); every reader turns a missing or
damaged file into one :class:`~vaelab.core.errors.VaelabError` naming it and the fix.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.core.io import atomic_path, load_arrays
from vaelab.model.networks import ArchConfig, TrainedVae

ENCODER_FILE = "encoder.keras"
DECODER_FILE = "decoder.keras"
CONFIG_FILE = "config.json"
GAMMA_FILE = "gamma.json"  # a learned Gaussian gamma ({"log_gamma": ...}); absent otherwise
PROGRESS_FILE = "progress.npy"
PROGRESS_LATENTS_FILE = "progress_latents.npy"
# The training loop's per-epoch metrics (nats per image), as the VAE model names them, and the
# columns of history.csv: each metric on the training batches, then on the validation set
# (Keras' val_ prefix). dvc.yaml's loss-curve plot lists the same columns (a test checks).
EPOCH_METRICS = ("loss", "reconstruction", "kl")
HISTORY_COLUMNS = ("epoch", *EPOCH_METRICS, *(f"val_{name}" for name in EPOCH_METRICS))


def save_vae(vae: TrainedVae, folder: str | Path) -> None:
    """Write encoder.keras, decoder.keras and config.json into ``folder`` (which must exist).
    Callers write into an :func:`vaelab.core.io.atomic_path` folder."""
    folder = Path(folder)
    vae.encoder.save(folder / ENCODER_FILE)
    vae.decoder.save(folder / DECODER_FILE)
    (folder / CONFIG_FILE).write_text(vae.config.to_json() + "\n")
    if vae.learned_log_gamma is not None:
        (folder / GAMMA_FILE).write_text(json.dumps({"log_gamma": vae.learned_log_gamma}) + "\n")


def load_vae(model_dir: str | Path) -> TrainedVae:
    """Load a model folder written by the train stage. A missing or damaged folder is a VaelabError."""
    import keras

    from vaelab.model.layers import SoftplusLogVariance

    model_dir = Path(model_dir)
    names = (ENCODER_FILE, DECODER_FILE, CONFIG_FILE)
    missing = [n for n in names if not (model_dir / n).is_file()]
    if missing:
        raise VaelabError(
            f"model folder {model_dir} lacks {', '.join(missing)}; run `dvc repro train@<dataset>` first"
        )
    try:
        config = ArchConfig.from_json((model_dir / CONFIG_FILE).read_text())
        # The infogan encoder's one layer of this package, by its registered name.
        encoder = keras.models.load_model(model_dir / ENCODER_FILE, compile=False,
                                          custom_objects={"vaelab>SoftplusLogVariance": SoftplusLogVariance})
        decoder = keras.models.load_model(model_dir / DECODER_FILE, compile=False)
        learned = (float(json.loads((model_dir / GAMMA_FILE).read_text())["log_gamma"])
                   if config.likelihood == "gaussian" and config.gamma == "learned" else None)
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise VaelabError(f"model folder {model_dir} is damaged ({error}); delete it and re-run the train stage") from None
    return TrainedVae(encoder=encoder, decoder=decoder, config=config, learned_log_gamma=learned)


def write_model_folder(vae: TrainedVae, progress: np.ndarray, progress_latents: np.ndarray,
                       out_dir: str | Path) -> None:
    """The model folder (encoder.keras, decoder.keras, config.json, progress.npy,
    progress_latents.npy), written atomically."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_vae(vae, tmp)
        np.save(tmp / PROGRESS_FILE, np.asarray(progress).astype(np.uint8))
        np.save(tmp / PROGRESS_LATENTS_FILE, np.asarray(progress_latents).astype(np.float32))


def write_history_csv(rows: Sequence[dict[str, float]], path: str | Path) -> None:
    """The per-epoch history as CSV (columns :data:`HISTORY_COLUMNS`, epoch 1-based), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HISTORY_COLUMNS)
            for row in rows:
                writer.writerow([int(row["epoch"])] + [repr(float(row[k])) for k in HISTORY_COLUMNS[1:]])


def read_history(path: str | Path) -> dict[str, np.ndarray]:
    """The train stage's per-epoch CSV as ``{column: float64 (epochs,)}`` (columns: HISTORY_COLUMNS).

    A missing file, a missing column, no rows or a non-number is a :class:`VaelabError`.
    """
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise VaelabError(f"training history {path} not found; run `dvc repro train@<dataset>` first") from None
    missing = [c for c in HISTORY_COLUMNS if c not in columns]
    if missing:
        raise VaelabError(f"training history {path} lacks columns {missing} (has {columns}); "
                          f"re-run the train stage to rewrite it")
    if not rows:
        raise VaelabError(f"training history {path} has no rows; re-run the train stage")
    try:
        return {c: np.array([float(row[c]) for row in rows]) for c in HISTORY_COLUMNS}
    except (TypeError, ValueError) as error:
        raise VaelabError(f"training history {path} holds a non-number ({error}); re-run the train stage") from None


def load_progress(model_dir: str | Path) -> np.ndarray:
    """``progress.npy`` of a model folder: uint8 (epochs, P, H, W, C); problems are VaelabErrors."""
    path = Path(model_dir) / PROGRESS_FILE
    progress = load_arrays(path, np.asarray, "training progress", "train")
    if progress.dtype != np.uint8 or progress.ndim != 5 or progress.shape[-1] not in (1, 3) or len(progress) == 0:
        raise VaelabError(f"{path} must be uint8 (epochs, points, H, W, 1|3), got {progress.dtype} "
                          f"{progress.shape}; re-run the train stage")
    return progress
