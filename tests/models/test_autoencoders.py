"""Autoencoders (identity / VQ / KL with the scaling factor) and the fingerprinted latent cache."""

from __future__ import annotations

import pytest
import torch

from slimdiff.data.datasets import make_dataset
from slimdiff.data.latent_cache import cached_latents, source_fingerprint
from slimdiff.errors import ModelError
from slimdiff.models.autoencoders import load_autoencoder


def test_identity_is_pixel_space():
    ae = load_autoencoder("identity")
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert ae.factor == 1 and ae.latent_channels == 3
    assert torch.equal(ae.encode(x), x) and torch.equal(ae.decode(x), x)
    with pytest.raises(ModelError, match="takes no source"):
        load_autoencoder("identity", "some/model")


def test_vq_matches_diffusers_with_scale(tmp_path, tiny_vq):
    model = tiny_vq()
    model.save_pretrained(tmp_path / "vq")
    ae = load_autoencoder("vq", str(tmp_path / "vq"), scaling_factor=0.5)
    assert (ae.factor, ae.latent_channels, ae.scaling_factor) == (4, 3, 0.5)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        h = model.encode(x).latents
        expected = model.decode(h).sample
    z = ae.encode(x)
    assert z.shape == (2, 3, 4, 4)
    torch.testing.assert_close(z, 0.5 * h)
    torch.testing.assert_close(ae.decode(z), expected)  # decode undoes the scale, then quantises
    assert ae.model.config.scaling_factor == 0.5  # saved with the pipeline, read back by it
    assert load_autoencoder("vq", str(tmp_path / "vq")).scaling_factor == 1.0  # LDM's unscaled VQ latents


def test_kl_found_in_pipeline_subfolder_with_its_scale(tmp_path, tiny_kl):
    model = tiny_kl(levels=4)
    model.save_pretrained(tmp_path / "pipe" / "vae")
    ae = load_autoencoder("kl", str(tmp_path / "pipe"))
    assert (ae.factor, ae.latent_channels) == (8, 4)
    assert ae.scaling_factor == pytest.approx(0.18215)  # the model config's own
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        mean = model.encode(x).latent_dist.mean
    torch.testing.assert_close(ae.encode(x), mean * 0.18215)
    with pytest.raises(ModelError, match="cannot load the VQModel: .*missing is neither a model folder"):
        load_autoencoder("vq", str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="needs a source"):
        load_autoencoder("kl")


def test_fingerprint_tracks_weights_and_scale(tmp_path, tiny_vq):
    model = tiny_vq()
    model.save_pretrained(tmp_path / "vq")
    a = load_autoencoder("vq", str(tmp_path / "vq")).fingerprint()
    assert a == load_autoencoder("vq", str(tmp_path / "vq")).fingerprint()
    assert a != load_autoencoder("vq", str(tmp_path / "vq"), scaling_factor=2.0).fingerprint()
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    model.save_pretrained(tmp_path / "vq2")
    assert a != load_autoencoder("vq", str(tmp_path / "vq2")).fingerprint()


def test_latent_cache_reuses_only_matching_key(tmp_path, monkeypatch, tiny_vq):
    tiny_vq().save_pretrained(tmp_path / "vq")
    ae = load_autoencoder("vq", str(tmp_path / "vq"))
    images = make_dataset("builtin:textures", 16, length=6)
    key = source_fingerprint("builtin:textures", 16, 0, 6, "image")
    latents, folder = cached_latents(images, ae, tmp_path / "cache", key, batch_size=4, progress=False)
    assert len(latents) == 6 and latents[0].shape == (3, 4, 4)
    torch.testing.assert_close(latents[5], ae.encode(images[5][None])[0])
    # Second call: read from disk, never encoding (the encoder would raise).
    monkeypatch.setattr(ae, "encode", lambda x: (_ for _ in ()).throw(AssertionError("re-encoded")))
    again, same = cached_latents(images, ae, tmp_path / "cache", key, batch_size=4, progress=False)
    assert same == folder and torch.equal(again.latents, latents.latents)
    monkeypatch.undo()
    # Another crop seed is another key: a new folder, freshly encoded.
    other_key = source_fingerprint("builtin:textures", 16, 1, 6, "image")
    _, other = cached_latents(
        make_dataset("builtin:textures", 16, seed=1, length=6),
        ae,
        tmp_path / "cache",
        other_key,
        progress=False,
    )
    assert other != folder
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_source_fingerprint_sees_file_changes(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    before = source_fingerprint(str(tmp_path), 16, 0, None, "image")
    (tmp_path / "b.png").write_bytes(b"y")
    assert source_fingerprint(str(tmp_path), 16, 0, None, "image") != before
    assert source_fingerprint(str(tmp_path), 32, 0, None, "image") != source_fingerprint(
        str(tmp_path), 16, 0, None, "image"
    )
