"""The data phase (download, preprocess): dataset kinds and sources, safe archives, image decoding, canonical-format writers."""
