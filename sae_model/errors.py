"""The library's exceptions: every decode failure is a CodecError."""


class CodecError(Exception):
    """Base class of every error raised by saepress."""


class CorruptStreamError(CodecError):
    """Bad magic, truncation, CRC mismatch or inconsistent fields."""


class ModelMismatchError(CodecError):
    """The stream was written with a different model (fingerprint differs)."""


class UnsupportedVersionError(CodecError):
    """The stream uses a format version this library cannot read."""


class UnsupportedImageError(CodecError):
    """Encoding an image that Pillow cannot convert to a supported mode."""


class NotExactError(UnsupportedImageError):
    """The image cannot be stored at the requested exact fidelity (the message is the reason); keep it verbatim."""
