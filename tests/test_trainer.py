"""Trainer: seeded, resumable, objective decreases, produces a working codec."""

import numpy as np
import pytest
import torch
from PIL import Image

from sae_model import PATCH_SPEC, Codec, TrainConfig, Trainer, auto_device, sample_patches, train


@pytest.fixture(scope="module")
def patches():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    img = np.stack([128 + 100 * np.sin((x * np.cos(a) + y * np.sin(a)) / 3) for a in (0.3, 1.2, 2.0)], -1)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)
    return sample_patches(Image.fromarray(img), 3000, rng)


def test_an_explicit_device_holds_the_model_and_its_state():
    trainer = Trainer(TrainConfig(K=2), device="cpu")
    assert trainer.device == "cpu"
    assert {p.device.type for p in trainer.model.parameters()} | {trainer.var.device.type} == {"cpu"}


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert auto_device() == expected


def test_no_device_means_the_automatic_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    trainer = Trainer(TrainConfig(K=2))
    assert trainer.device == "cpu" and trainer.var.device.type == "cpu"


def test_training_is_seeded_and_improves(patches):
    torch.set_num_threads(1)
    cfg = TrainConfig(K=4, steps=0, batch_size=256, lr=5e-3, seed=3)
    runs = []
    for _ in range(2):
        t = Trainer(cfg, device="cpu")
        t.initialize(patches)
        rng = np.random.default_rng(cfg.seed)
        hist = [t.step(patches[rng.integers(0, len(patches), cfg.batch_size)]) for _ in range(25)]
        runs.append((hist, t.to_codec().fingerprint))
    assert runs[0] == runs[1]
    hist = runs[0][0]
    assert set(hist[0]) == {"loss", "mse", "l1", "active"}
    assert np.mean([h["loss"] for h in hist[-5:]]) < np.mean([h["loss"] for h in hist[:5]])


def test_bases_stay_orthonormal(patches):
    t = Trainer(TrainConfig(K=3, batch_size=128, lr=1e-2), device="cpu")
    t.initialize(patches)
    for i in range(5):
        t.step(patches[i * 128:(i + 1) * 128])
    B = t.model.bases().detach().numpy()
    for k in range(3):
        assert np.allclose(B[k].T @ B[k], np.eye(64), atol=1e-8)


def test_resume_matches_uninterrupted(patches):
    cfg = TrainConfig(K=2, batch_size=128, seed=1)
    a = Trainer(cfg, device="cpu")
    a.initialize(patches)
    batches = [patches[i * 128:(i + 1) * 128] for i in range(6)]
    for b in batches[:3]:
        a.step(b)
    buf = __import__("io").BytesIO()
    torch.save(a.state_dict(), buf)
    b_ = Trainer(cfg, device="cpu")
    b_.load_state_dict(torch.load(__import__("io").BytesIO(buf.getvalue()), weights_only=True))
    assert b_.step_count == 3
    for b in batches[3:]:
        ma, mb = a.step(b), b_.step(b)
        assert ma == pytest.approx(mb, rel=1e-9)


def test_train_function_and_codec(patches, tmp_path):
    seen = []
    codec = train(TrainConfig(K=2, steps=3, batch_size=64), patches, device="cpu",
                  callback=lambda s, m: seen.append(s))
    assert seen == [1, 2, 3]
    codec.save(tmp_path)
    c2 = Codec.load(tmp_path)
    img = np.asarray(Image.fromarray(patches[0].reshape(3, 8, 8).transpose(1, 2, 0).astype(np.uint8), "YCbCr")
                     .convert("RGB"))
    assert c2.decode(c2.encode(img)).size == (8, 8)
    assert PATCH_SPEC["dim"] == 192


def test_warm_start_reproduces_the_codec_it_starts_from():
    default = Codec.pretrained()
    trainer = Trainer(TrainConfig(K=default.config["K"]), device="cpu")
    trainer.initialize_from(default)
    warm = trainer.to_codec().weights
    assert torch.allclose(warm["bases"], default.weights["bases"], atol=1e-6)
    assert torch.equal(warm["sigma16"], default.weights["sigma16"])


def test_warm_start_needs_the_same_number_of_members():
    with pytest.raises(ValueError, match="start cold"):
        Trainer(TrainConfig(K=2), device="cpu").initialize_from(Codec.pretrained())
