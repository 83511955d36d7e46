"""Compiled kernels are cached per version of their sources (sae_model/kernel_cache.py)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from sae_model import kernel_cache

SAE_MODEL = Path(kernel_cache.__file__).parent


def test_every_module_with_kernels_and_every_constant_they_freeze_is_hashed():
    """numba freezes imported module-level constants (BANDS, ESC, ...) into a kernel."""
    with_kernels = {p.relative_to(SAE_MODEL).as_posix() for p in SAE_MODEL.rglob("*.py")
                    if re.search(r"^@njit", p.read_text(), re.M)}
    constants_from = set()
    for name in with_kernels:
        package = Path(name).parent
        for dots, module, names in re.findall(r"^from (\.+)(\w+) import \(?([^)\n]*(?:\n[^)\n]*)*?)\)?$",
                                              (SAE_MODEL / name).read_text(), re.M):
            if any(n.strip().isupper() for n in names.replace("\n", " ").split(",")):
                base = package.parents[len(dots) - 2] if len(dots) > 1 else package
                constants_from.add((base / f"{module}.py").as_posix())
    assert with_kernels | constants_from == set(kernel_cache.KERNEL_SOURCES)


def test_kernels_compile_into_the_versioned_folder(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    code = ("import numpy as np, sae_model; c = sae_model.Codec.pretrained(); "
            "c.decode(c.encode(np.zeros((9, 9, 3), np.uint8)))")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    folder = tmp_path / f"kernels-{kernel_cache.kernels_digest()}"
    cached = {p.name.split(".")[0] for p in folder.rglob("*.nbi")}
    assert {"blockcoder", "rangecoder", "postfilter"} <= cached
