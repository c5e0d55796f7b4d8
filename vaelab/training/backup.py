"""Resumable training: a backup after every epoch, and the fingerprint that decides whether a
backup may be resumed.

The backup folder holds the weights (with the optimizer's state), the history rows and progress
frames so far, and the random generators' states, each file written atomically; ``state.json``
is written last and is the commit point. A backup resumes only the run whose
:func:`fingerprint` (data, architecture, training settings, compute policy) it was made with;
any other is ignored and the run restarts. Imported by training alone (it imports Keras).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import keras
import numpy as np

from vaelab.core.errors import VaelabError
from vaelab.training.hardware import mixed_precision_policy
from vaelab.model.networks import ArchConfig
from vaelab.model.outputs import HISTORY_COLUMNS

STATE_FILE = "state.json"


class ResumableBackup(keras.callbacks.Callback):
    """After every epoch, back up the weights (with the optimizer's state), the random
    generators' states, the history rows and the progress frames; each file is written
    atomically, so a crash mid-save leaves the previous complete backup. Resuming is
    :func:`restore_backup` before ``fit(..., initial_epoch=...)``: public Keras API only."""

    def __init__(self, backup_dir: Path, fingerprint: str, recorder: Any):
        super().__init__()
        self.backup_dir, self.fingerprint, self.recorder = Path(backup_dir), fingerprint, recorder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        folder = self.backup_dir
        folder.mkdir(parents=True, exist_ok=True)
        done = epoch + 1  # epochs completed
        weights = f"epoch-{done:05d}.weights.h5"
        extras = f"epoch-{done:05d}.npz"
        self.model.save_weights(folder / weights, overwrite=True)
        with open(folder / f".{extras}", "wb") as handle:
            np.savez(handle, rows=np.array([[r[k] for k in HISTORY_COLUMNS] for r in self.recorder.rows]),
                     frames=np.stack(self.recorder.frames),
                     seed_states=np.array([np.asarray(v) for v in seed_states(self.model)]))
        os.replace(folder / f".{extras}", folder / extras)
        state = {"epoch": done, "weights": weights, "extras": extras, "fingerprint": self.fingerprint}
        (folder / f".{STATE_FILE}").write_text(json.dumps(state))
        os.replace(folder / f".{STATE_FILE}", folder / STATE_FILE)  # the commit point
        for old in folder.glob("epoch-*"):
            if old.name not in (weights, extras):
                old.unlink()


def restore_backup(model: Any, backup_dir: Path, state: dict[str, Any]) -> None:
    """Load the backup ``state`` (from :func:`read_backup`) into the compiled ``model``: weights,
    the optimizer's moments and step, and the random generators' states."""
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(Path(backup_dir) / state["weights"])
    # Keras' weights files leave out the random generators' states (the VAE's noise,
    # dropout): restore them too, or the resumed run draws other numbers.
    states = seed_states(model)
    if len(states) != len(state["seed_states"]):
        raise RuntimeError("backup and model disagree on the number of random generators")
    for variable, value in zip(states, state["seed_states"]):
        variable.assign(value)


def seed_states(model: Any) -> list[Any]:
    """The state variables of every ``keras.random.SeedGenerator`` of ``model``, in a fixed order:
    the model's variables that are not weights (Keras' ``Layer.variables`` is the weights plus
    the seed generators' states)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def fingerprint(x_train: np.ndarray, x_test: np.ndarray, config: ArchConfig, train: Any) -> str:
    """A digest of everything that determines the training run (``train``: a
    :class:`vaelab.training.loop.TrainConfig`); a backup resumes only a run with the same one."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(config.to_json().encode())
    digest.update(json.dumps(asdict(train), sort_keys=True).encode())
    # The same params train in float16 on a GPU and bfloat16 on a CPU: not the same run.
    digest.update(str(mixed_precision_policy(train.mixed_precision)).encode())
    for array in (x_train, x_test):
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def check_backup_dir(backup_dir: Path) -> None:
    """Refuse a backup folder holding anything but our files: it gets deleted after the run."""
    if backup_dir.exists():
        foreign = [p.name for p in backup_dir.iterdir()
                   if not re.fullmatch(r"\.?(state\.json|epoch-\d+\.(weights\.h5|npz))", p.name)]
        if foreign or not backup_dir.is_dir():
            raise VaelabError(
                f"backup folder {backup_dir} holds other files ({', '.join(sorted(foreign)[:3]) or 'not a folder'}); "
                f"it is deleted after training, so point --backup at a folder of its own"
            )


def read_backup(backup_dir: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The backup's state (epoch, file names, rows, frames), or None when there is no usable one."""
    try:
        state = json.loads((backup_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if state.get("fingerprint") != expected_fingerprint:
        return None
    try:
        with np.load(backup_dir / state["extras"]) as extras:
            state["rows"] = [dict(zip(HISTORY_COLUMNS, map(float, row))) for row in extras["rows"]]
            state["frames"] = list(extras["frames"])
            state["seed_states"] = extras["seed_states"]
    except (OSError, KeyError, ValueError):
        return None
    if not (backup_dir / state["weights"]).is_file() or len(state["rows"]) != state["epoch"]:
        return None
    for row in state["rows"]:
        row["epoch"] = int(row["epoch"])
    return state
