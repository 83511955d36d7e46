"""saepress codec library: a mixture-of-orthonormal-bases sparse autoencoder image codec."""

from . import kernel_cache

kernel_cache.configure()  # before any compiled kernel runs

from . import evaluate
from .bitstream import FORMAT_VERSION, Header
from .bitstream import read_header as _read_header
from .codec import DEFAULT_MAX_PIXELS, Codec
from .encoder import EncoderSettings
from .errors import (CodecError, CorruptStreamError, ImageTooLargeError, ModelMismatchError,
                     UnsupportedImageError, UnsupportedVersionError)
from .evaluate import bd_rate, psnr
from .patches import PATCH_SPEC, sample_patches
from .train import TrainConfig, Trainer, auto_device, train
from .viz import atoms_image


def read_header(data: bytes) -> Header:
    """Parse the stream header (no model, no CRC check): .fingerprint .width .height .mode ..."""
    return _read_header(bytes(data[:128]))


__all__ = ["Codec", "EncoderSettings", "CodecError", "CorruptStreamError", "ModelMismatchError", "UnsupportedVersionError",
           "UnsupportedImageError", "PATCH_SPEC", "sample_patches", "TrainConfig", "Trainer", "train",
           "auto_device", "atoms_image", "read_header", "psnr", "bd_rate", "evaluate", "FORMAT_VERSION", "DEFAULT_MAX_PIXELS", "ImageTooLargeError",
           "Header"]
