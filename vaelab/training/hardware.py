"""The machine's side of training: the 16-bit compute policy and the distribution strategy.

``mixed_precision: true`` means float16 with loss scaling on GPUs (tensor cores) and bfloat16 on
CPUs, the one 16-bit type CPUs have hardware for (AMX, AVX512-BF16); :func:`cpu_has_bfloat16`
reads Linux's cpuinfo flags so training can warn where bfloat16 would be emulated. Several GPUs
train under ``tf.distribute.MirroredStrategy``.
"""

from __future__ import annotations

import re
from pathlib import Path


def mixed_precision_policy(mixed_precision: bool, on_gpu: bool | None = None) -> str | None:
    """The Keras dtype policy of the hidden layers: None (float32) unless ``mixed_precision``;
    then "mixed_float16" on a GPU (tensor cores; Adam gets loss scaling) and "mixed_bfloat16"
    on a CPU, the one 16-bit type CPUs have hardware for (AMX, AVX512-BF16); CPUs without it
    emulate bfloat16 far slower than float32 (docs/gpu.md), so
    :func:`vaelab.training.loop.train_vae` warns on them. ``on_gpu``: default, whether TensorFlow sees a GPU."""
    if not mixed_precision:
        return None
    if on_gpu is None:
        on_gpu = gpu_available()
    return "mixed_float16" if on_gpu else "mixed_bfloat16"


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def cpu_has_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU computes bfloat16 in hardware (the ``amx_bf16`` or ``avx512_bf16`` flag
    of Linux's ``cpuinfo``); None where that file cannot be read (not Linux)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = set(re.findall(r"\w+", "\n".join(line for line in text.splitlines() if line.startswith("flags"))))
    return bool(flags & {"amx_bf16", "avx512_bf16"})


def bfloat16_is_emulated(mixed_precision: bool) -> bool:
    """Whether ``mixed_precision`` means bfloat16 on a CPU known to lack bfloat16 hardware
    (emulated there, and slower than float32: ``benchmarks/bench_train.py``)."""
    return mixed_precision_policy(mixed_precision) == "mixed_bfloat16" and cpu_has_bfloat16() is False


def trains_faster_from_the_pool(architecture: str) -> bool:
    """Whether to train ``architecture`` with TensorFlow's pooled CPU allocator
    (:func:`vaelab.core.cli.start_tensorflow`): conv models train faster from it, the mlp (many
    small tensors) slower (benchmarks/bench_train.py --allocator-rounds, docs/costs.md)."""
    return architecture != "mlp"


def distribution_strategy():
    """MirroredStrategy over all GPUs when there are several, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
