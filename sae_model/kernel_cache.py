"""Where numba keeps the compiled kernels: one folder per version of the kernel sources.

numba's own cache checks only the timestamp of the file that defines a function, not of the
files whose functions it calls and compiles in (blockcoder calls rangecoder): after an upgrade
that changed only rangecoder.py, a stale blockcoder kernel would code the old format. Keying
the folder by a hash of every kernel source makes a stale kernel impossible. The base folder
is NUMBA_CACHE_DIR when set (the Docker image sets it), else the user cache directory.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# kernels and the modules whose constants numba freezes into them (paths relative to sae_model/)
KERNEL_SOURCES = ("rangecoder.py", "blockcoder.py", "postfilter.py", "encoder.py", "planes.py", "tables.py",
                  "predict.py", "restore.py")


def kernels_digest() -> str:
    h = hashlib.sha256()
    for name in KERNEL_SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    return h.hexdigest()[:16]


def configure() -> Path:
    import numba.core.config as config
    from platformdirs import user_cache_dir

    base = os.environ.get("NUMBA_CACHE_DIR") or user_cache_dir("saepress")
    folder = Path(base) / f"kernels-{kernels_digest()}"
    config.CACHE_DIR = str(folder)
    return folder
