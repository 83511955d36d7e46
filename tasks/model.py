"""The model of a compress job: chosen once, recorded exactly, and copied into SHARDDIR/models/<fingerprint>/ so the
shards decode without the registry.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import compress as units
from tasks import registry, shards
from tasks.errors import ConfigError


@task(retries=2, retry_delay_seconds=2, cache_policy=NO_CACHE)
def resolve_model(model: str | None, model_name: str, out: str) -> dict[str, Any]:
    """Pick the model once, record exactly which one, and copy it into SHARDDIR/models/<fingerprint>/."""
    from sae_model import Codec, CodecError

    uri, version, run_id = model, None, None
    if model == registry.DEFAULT_URI:
        uri = None
    elif model is None or model.startswith("models:/"):
        uri, version, run_id = registry.resolve(model or f"models:/{model_name}@{registry.CHAMPION}")
    try:
        codec = Codec.load(uri) if uri else Codec.pretrained()
    except (CodecError, OSError) as exc:
        raise ConfigError(f"cannot load model {uri}: {exc}") from None
    fingerprint = codec.fingerprint
    fs, root = shards.open_dir(units.model_dir(out, fingerprint))
    if units.model_problems(fs, root, fingerprint):  # absent, or left damaged by a crash or a full disk
        from sae_model.codec import CONFIG, WEIGHTS

        # Save locally (Codec.save writes to a directory on this machine), then put each file atomically.
        with tempfile.TemporaryDirectory(prefix="saepress-model-") as tmp:
            codec.save(tmp)
            for name in (WEIGHTS, CONFIG):
                shards.put_atomic(fs, f"{root}/{name}", Path(tmp, name).read_bytes())
    # Prove the copy decodes as this model before any shard depends on it.
    units._CODECS.pop(units.model_dir(out, fingerprint), None)
    try:
        units.load_codec(out, fingerprint)
    except units.ItemError as exc:
        raise ConfigError(f"{exc}; delete {units.model_dir(out, fingerprint)} and run again") from None
    return {"uri": uri or registry.DEFAULT_URI, "version": version, "run_id": run_id, "fingerprint": fingerprint}
