"""`saepress run` end to end: the archive's own model races the shipped default, and the shards are coded with the
model that won on the archive's validation images."""
from __future__ import annotations

import pytest
from test_training import make_archive, tiny_training  # noqa: F401


@pytest.mark.slow
def test_run_on_a_tiny_archive_keeps_the_default_and_codes_the_shards_with_it(tmp_path, prefect_harness,
                                                                              tiny_training, monkeypatch):
    from flows.run import run_flow
    from sae_model import Codec

    monkeypatch.setenv("SAEPRESS_MODEL_NAME", "codec-run-test")  # no champion from another test
    make_archive(tmp_path / "archive", 14)  # extract holds out 15%: 2 validation images, enough at TINY_LOOP
    result = run_flow(source=str(tmp_path / "archive"), out=str(tmp_path / "work"), steps=10)

    assert result["problems"] == []
    decision = result["decision"]
    assert decision["decision"] == "kept" and "not lower than the shipped default's" in decision["reason"]
    assert decision["validation_images"] == 2
    default = Codec.pretrained()
    assert result["model"] == {"uri": "sae_model:pretrained", "version": None, "run_id": None,
                               "fingerprint": default.fingerprint}
    tail = result["report"][-8:]
    assert tail[0].startswith("validation: 2 images")
    assert [line.split()[0] for line in tail[2:6]] == ["candidate", "default", "jpeg", "webp"]
    assert tail[-2].startswith("decision: kept")
    assert tail[-1] == f"shards coded with: sae_model:pretrained (fingerprint {default.fingerprint[:12]})"
