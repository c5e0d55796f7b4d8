"""What every stage command shares: running it, its output, its arguments, params and sources.

Stages stay thin: ``dvc.yaml`` passes each one ``--dataset`` and its paths; the stage declares
them with :func:`stage_parser`, loads its settings with :func:`stage_params` and is run by
:func:`run_cli`, which sets up the one output format of every stage (``<level>: <message>`` on
stderr, through :mod:`logging`) and turns a :class:`~vaelab.core.errors.VaelabError` into one
``error: ...`` line and exit status 1.

TensorFlow prints a dozen C++ lines when it starts (oneDNN notices, "Could not find cuda
drivers", and on machines without a GPU an ``E0000 ... failed call to cuInit`` error), most of
them before its own log settings apply. :func:`start_tensorflow` starts it with those lines
silenced and logs one line saying which devices it found instead; ``VAELAB_TF_LOGS=1`` shows
TensorFlow's own lines again. It also sets TensorFlow's CPU allocator switch first
(:data:`POOLED_ALLOCATOR_ENV`), so every stage gets the fast path with nothing to install.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import warnings
from typing import Any, Callable, Iterator, Mapping

from vaelab.core.errors import VaelabError

TF_LOGS_ENV = "VAELAB_TF_LOGS"
# TensorFlow's switch for its pooled (best-fit-with-coalescing) CPU allocator, which
# :func:`start_tensorflow` sets before importing it unless the user has. With malloc, glibc
# serves every buffer above its mmap threshold (128 kB to 32 MB) with a fresh mmap and unmaps it
# on free, so each batch of 299-px Inception activations (tens to hundreds of MB) was
# page-faulted in anew; the pool keeps them. Same values bit for bit. benchmarks/bench_features.py
# and bench_train.py measure it (docs/costs.md).
POOLED_ALLOCATOR_ENV = "TF_CPU_ALLOCATOR_USE_BFC"
LOG_FORMAT = "%(levelname)s: %(message)s"

log = logging.getLogger("vaelab")

# The files stages hand each other, by argument name (dvc.yaml passes their paths).
STAGE_INPUTS = {
    "raw": "the download stage's folder (data/raw/<dataset>)",
    "data": "prepared .npz of the preprocess stage",
    "models": "model folder of the train stage",
    "density": "latent mixture of the fit_gmm stage",
    "two_stage": "two-stage sampler folder of the fit_two_stage stage",
    "reference": "reference statistics of the reference_stats stage",
    "history": "per-epoch history CSV of the train stage",
}


class _LowerCaseLevels(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.levelname = record.levelname.lower()
        return super().format(record)


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    # warnings.warn (e.g. the FID bias warning) as one line in the same format: its message alone.
    logging.getLogger("py.warnings").warning("%s", message)


def setup_logging(level: int = logging.INFO) -> None:
    """One format for every stage: ``info: ...``, ``warning: ...``, ``error: ...`` on stderr, one
    line each, Python warnings included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LowerCaseLevels(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    warnings.showwarning = _log_warning


def run_cli(main: Callable[[], None]) -> None:
    """Run a stage's ``main`` with :func:`setup_logging`; a ``VaelabError`` becomes one line
    ``error: <message>`` on stderr and exit status 1. Anything else is a bug and keeps its traceback."""
    setup_logging()
    try:
        main()
    except VaelabError as error:
        log.error("%s", error)
        sys.exit(1)


@contextlib.contextmanager
def _fd2_replaced_by(fd: int) -> Iterator[None]:
    """File descriptor 2 (where C++ code writes) pointed at ``fd`` while the block runs, and restored
    after it, also when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _fd2_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null, and restore it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with _fd2_replaced_by(devnull):
            yield
    finally:
        os.close(devnull)


# A line TensorFlow's C++ code prints when Keras' fit builds its input pipeline from arrays with op
# determinism on: tf.data turns the parallel map into a plain MapDataset and keeps an attribute that
# op lacks. The pipeline runs as built; the line is no error of the run.
HARMLESS_TF_LINES = ("NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",)


@contextlib.contextmanager
def fd2_without(needles: tuple[str, ...] = HARMLESS_TF_LINES) -> Iterator[None]:
    """Pass everything written to file descriptor 2 (Python's stderr and C++ code alike) through to
    it, less the lines holding one of ``needles``: a thread reads a pipe put in fd 2's place."""
    wanted = tuple(n.encode() for n in needles)
    sys.stderr.flush()
    out_fd = os.dup(2)  # the pump's own copy of the real fd 2, made before fd 2 changes
    read_end, write_end = os.pipe()

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(out_fd, "wb") as out:
            for line in pipe:
                if not any(n in line for n in wanted):
                    out.write(line)
                    out.flush()

    thread = threading.Thread(target=pump, name="fd2-filter", daemon=True)
    thread.start()
    try:
        with _fd2_replaced_by(write_end):
            yield
    finally:
        os.close(write_end)  # the pipe's last write end: the pump reads to its end and stops
        thread.join()


def start_tensorflow(pooled_allocator: bool = True) -> None:
    """Import TensorFlow (after :func:`tensorflow_environment` with ``pooled_allocator``) and find
    its devices, with its C++ start-up lines silenced unless ``VAELAB_TF_LOGS=1``; log which
    devices it found. Later imports of it are then silent too.
    (A Python error while importing still shows: it is raised after stderr is restored.)"""
    if "tensorflow" in sys.modules:
        return
    tensorflow_environment(pooled_allocator)
    if os.environ.get(TF_LOGS_ENV) == "1":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    else:
        with _fd2_silenced():
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
    where = f"{len(gpus)} GPU(s): {', '.join(g.name for g in gpus)}" if gpus else "the CPU (no GPU found)"
    log.info("TensorFlow %s runs on %s; set %s=1 to see its own start-up messages", tf.__version__, where,
             TF_LOGS_ENV)


def tensorflow_environment(pooled_allocator: bool = True) -> dict[str, str]:
    """Set :data:`POOLED_ALLOCATOR_ENV` to ``pooled_allocator`` unless the environment sets it
    already (it takes effect only if TensorFlow is imported afterwards); return the value now in force."""
    os.environ.setdefault(POOLED_ALLOCATOR_ENV, "true" if pooled_allocator else "false")
    return {POOLED_ALLOCATOR_ENV: os.environ[POOLED_ALLOCATOR_ENV]}


def stage_parser(doc: str, inputs: tuple[str, ...] = (), out: str | None = None) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` (the stage's docstring), with
    ``--dataset``, ``--params``, a required ``--<name>`` for each of ``inputs`` (names of
    :data:`STAGE_INPUTS`) and ``--out`` (helped by ``out``) when given; a stage adds any other
    argument itself."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a key under datasets: in params.yaml")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    for name in inputs:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, help=STAGE_INPUTS[name])
    if out is not None:
        parser.add_argument("--out", required=True, help=out)
    return parser


def stage_params(args: argparse.Namespace) -> Mapping[str, Any]:
    """The top-level mapping of ``args.params`` (:func:`vaelab.core.params.read_params`), with
    ``args.dataset`` known: a bad file, an unknown key or an unknown dataset fails here, before
    any work. The stage then checks the sections it reads with its phase's schema."""
    from vaelab.core.params import dataset_entry, read_params

    raw = read_params(args.params)
    dataset_entry(raw, args.dataset, "data")
    return raw
