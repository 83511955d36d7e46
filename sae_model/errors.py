"""The library's exceptions: every decode failure is a CodecError."""


class CodecError(Exception):
    """Base of the codec library's errors: a stream, model or image it cannot code (bad
    arguments raise ValueError; tasks and flows have their own errors)."""


class CorruptStreamError(CodecError):
    """Bad magic, truncation, CRC mismatch or inconsistent fields."""


class ModelMismatchError(CodecError):
    """The stream was written with a different model (fingerprint differs)."""


class UnsupportedVersionError(CodecError):
    """The stream uses a format version this library cannot read."""


class ImageTooLargeError(CodecError):
    """The stream's header declares more pixels than the decode limit (max_pixels)."""


class UnsupportedImageError(CodecError):
    """Encoding an image that Pillow cannot convert to a supported mode."""


class NotExactError(UnsupportedImageError):
    """The image cannot be stored at the requested exact fidelity (the message is the reason); keep it verbatim."""
