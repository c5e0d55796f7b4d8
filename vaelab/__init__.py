"""vaelab: variational autoencoders on image datasets, judged by FID.

The library behind the DVC stages in ``stages/``. Modules are importable without side
effects (TensorFlow is imported only by the modules that build or run networks).
"""
