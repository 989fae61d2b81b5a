"""Diffusers conformance, loading: what a diffusers user does with a slimdiff folder or hub id works the diffusers
way — plain `DiffusionPipeline.from_pretrained` and `AutoModel`, hub ids through `DiffusionPipeline.download` (the
hub mocked: nothing leaves the machine), diffusers' loading keywords, variants, dtypes, `from_pipe`, and plain
configs staying plain in slimdiff's classes."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import diffusers
import pytest
import torch
from diffusers import AutoModel, DiffusionPipeline, UNet2DConditionModel, UNet2DModel

import slimdiff
from slimdiff.diffusion import training_scheduler
from slimdiff.errors import ModelError
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel
from slimdiff.sampling.pipeline import SlimDiffusionPipeline, load_pipeline

from .drawing import draw


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_pipeline):
    """(pipeline, its save_pretrained folder)."""
    pipe = tiny_pipeline()
    folder = tmp_path_factory.mktemp("saved") / "model"
    pipe.save_pretrained(folder)
    return pipe, folder


# --- plain diffusers loaders ---------------------------------------------------------------------------------------


def test_model_index_names_classes_diffusers_resolves(saved):
    _, folder = saved
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "SlimDiffusionPipeline"
    assert index["unet"] == ["diffusers", "SlimUNet2DModel"]  # the name `import slimdiff` registers
    assert diffusers.SlimDiffusionPipeline is SlimDiffusionPipeline is slimdiff.SlimDiffusionPipeline
    assert diffusers.SlimUNet2DModel is SlimUNet2DModel
    assert diffusers.SlimUNet2DConditionModel is SlimUNet2DConditionModel


def test_plain_diffusion_pipeline_from_pretrained_returns_ours(
    saved, assert_same_parameters, assert_outputs_close
):
    pipe, folder = saved
    loaded = DiffusionPipeline.from_pretrained(folder)
    assert type(loaded) is SlimDiffusionPipeline and type(loaded.unet) is SlimUNet2DModel
    assert_same_parameters(pipe.unet, loaded.unet)
    assert_outputs_close(draw(loaded), draw(pipe))


def test_plain_diffusers_in_a_fresh_process_needs_only_import_slimdiff(saved, tmp_path):
    _, folder = saved
    script = (
        "import sys, diffusers\n"
        "try:\n    diffusers.DiffusionPipeline.from_pretrained(sys.argv[1])\n"
        "except AttributeError as e:\n    print('without:', e)\n"
        "import slimdiff\n"
        "pipe = diffusers.DiffusionPipeline.from_pretrained(sys.argv[1])\n"
        "unet = diffusers.AutoModel.from_pretrained(sys.argv[1], subfolder='unet')\n"
        "print('with:', type(pipe).__name__, type(unet).__name__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, check=True
    )
    assert "without: module diffusers has no attribute SlimDiffusionPipeline" in out.stdout
    assert "with: SlimDiffusionPipeline SlimUNet2DModel" in out.stdout


def test_automodel_returns_our_unet_from_a_pipeline_or_a_bare_folder(saved, tmp_path, assert_same_parameters):
    pipe, folder = saved
    for unet in (
        AutoModel.from_pretrained(str(folder), subfolder="unet"),
        AutoModel.from_pretrained(str(folder / "unet")),
    ):
        assert type(unet) is SlimUNet2DModel
        assert_same_parameters(pipe.unet, unet)


def _as_slimdiff_0_1(folder: Path, to: Path) -> Path:
    """A copy of `folder` as slimdiff 0.1 wrote it: the UNet listed by module path, the bare training schedule
    (DDPM at diffusers' defaults: leading spacing, clip_sample) as the scheduler."""
    shutil.copytree(folder, to)
    index = json.loads((to / "model_index.json").read_text())
    (to / "model_index.json").write_text(
        json.dumps({**index, "unet": ["slimdiff.models.unet", "SlimUNet2DModel"]})
    )
    training_scheduler().save_pretrained(to / "scheduler")
    return to


def test_folders_of_slimdiff_0_1_still_load(saved, tmp_path, assert_outputs_close):
    pipe, folder = saved
    old = _as_slimdiff_0_1(folder, tmp_path / "old")
    for loader in (DiffusionPipeline.from_pretrained, SlimDiffusionPipeline.from_pretrained, load_pipeline):
        loaded = loader(old)
        assert type(loaded.unet) is SlimUNet2DModel
        # the bare noise schedule samples as slimdiff always sampled it: trailing spacing, x0 clipped in pixel space
        assert loaded.scheduler.config.timestep_spacing == "trailing" and loaded.scheduler.config.thresholding
        assert_outputs_close(draw(loaded), draw(pipe))


# --- hub ids, the network mocked ---------------------------------------------------------------------------------


class FakeHub:
    """Repositories served from local folders through the three hub calls DiffusionPipeline.download makes."""

    def __init__(self, root: Path):
        self.root, self.repos, self.calls = root, {}, []

    def add(self, repo: str, folder: Path) -> None:
        self.repos[repo] = folder

    def _files(self, repo):
        return sorted(
            str(p.relative_to(self.repos[repo])) for p in self.repos[repo].rglob("*") if p.is_file()
        )

    def _snapshot(self, repo) -> Path:
        return self.root / repo.replace("/", "--")

    def model_info(self, repo, token=None, revision=None, **_):
        self.calls.append(("model_info", repo, token, revision))
        if repo not in self.repos:
            raise OSError(f"no repository {repo}")
        return SimpleNamespace(
            siblings=[SimpleNamespace(rfilename=f) for f in self._files(repo)], sha="0" * 40
        )

    def hf_hub_download(self, repo, filename, revision=None, token=None, **_):
        self.calls.append(("hf_hub_download", repo, filename, token, revision))
        target = self._snapshot(repo) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.repos[repo] / filename, target)
        return str(target)

    def snapshot_download(
        self, repo, allow_patterns=None, ignore_patterns=None, revision=None, token=None, **_
    ):
        self.calls.append(("snapshot_download", repo, tuple(allow_patterns or ()), token, revision))
        for name in self._files(repo):
            allowed = allow_patterns is None or any(fnmatch.fnmatch(name, p) for p in allow_patterns)
            if allowed and not any(fnmatch.fnmatch(name, p) for p in ignore_patterns or ()):
                self.hf_hub_download(repo, name)
        return str(self._snapshot(repo))


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub
    from diffusers.pipelines import pipeline_utils

    fake = FakeHub(tmp_path / "hub-cache")
    for name in ("model_info", "hf_hub_download", "snapshot_download"):
        monkeypatch.setattr(pipeline_utils, name, getattr(fake, name))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return fake


def test_a_hub_id_loads_through_diffusers_download(saved, hub, assert_same_parameters, assert_outputs_close):
    pipe, folder = saved
    hub.add("someone/slim-tiny", folder)
    for loader in (DiffusionPipeline.from_pretrained, SlimDiffusionPipeline.from_pretrained):
        loaded = loader("someone/slim-tiny", revision="v1", token="secret")
        assert type(loaded) is SlimDiffusionPipeline and loaded.name_or_path == "someone/slim-tiny"
        assert_same_parameters(pipe.unet, loaded.unet)
        assert_outputs_close(draw(loaded), draw(pipe))
    downloads = [c for c in hub.calls if c[0] == "snapshot_download"]
    assert downloads and all(c[3:] == ("secret", "v1") for c in downloads)  # token and revision passed on
    assert any("unet/diffusion_pytorch_model.safetensors" in c[2] for c in downloads)


def test_a_hub_repo_saved_by_slimdiff_0_1_loads_through_slimdiff(
    saved, hub, tmp_path, assert_same_parameters
):
    pipe, folder = saved
    hub.add("someone/old", _as_slimdiff_0_1(folder, tmp_path / "old-repo"))
    with pytest.raises(ValueError, match="slimdiff.models.unet"):  # diffusers' download refuses module paths
        DiffusionPipeline.from_pretrained("someone/old")
    assert_same_parameters(pipe.unet, SlimDiffusionPipeline.from_pretrained("someone/old").unet)


# --- diffusers' loading keywords -----------------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["dtype", "torch_dtype"])
@pytest.mark.parametrize("loader", [SlimDiffusionPipeline.from_pretrained, DiffusionPipeline.from_pretrained])
def test_dtype_keywords_load_the_unet_in_that_dtype(saved, loader, keyword):
    loaded = loader(saved[1], **{keyword: torch.bfloat16})
    assert loaded.unet.dtype == torch.bfloat16 and loaded.dtype == torch.bfloat16


def test_variant_device_map_and_hub_keywords_are_accepted(saved, tmp_path, assert_same_parameters):
    pipe, _ = saved
    pipe.save_pretrained(tmp_path / "fp16", variant="fp16")
    assert (tmp_path / "fp16" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    loaded = SlimDiffusionPipeline.from_pretrained(
        tmp_path / "fp16",
        variant="fp16",
        device_map="cpu",
        local_files_only=True,
        revision="main",
        token=None,
    )
    assert_same_parameters(pipe.unet, loaded.unet)
    with pytest.raises(ValueError, match="variant=bf16"):
        SlimDiffusionPipeline.from_pretrained(tmp_path / "fp16", variant="bf16")


def test_slimdiff_loads_safetensors_only_unless_told_otherwise(saved, tmp_path):
    pipe, _ = saved
    pipe.save_pretrained(tmp_path / "pickled", safe_serialization=False)
    with pytest.raises(ModelError, match="only pickled .bin weights.*use_safetensors=False"):
        SlimDiffusionPipeline.from_pretrained(tmp_path / "pickled")
    assert type(SlimDiffusionPipeline.from_pretrained(tmp_path / "pickled", use_safetensors=False).unet) is (
        SlimUNet2DModel
    )


def test_from_pipe_keeps_every_component(saved, tiny_pipeline, tiny_unet, tiny_kl):
    pipe, _ = saved
    copy = SlimDiffusionPipeline.from_pipe(pipe)
    assert copy.unet is pipe.unet and copy.scheduler is pipe.scheduler and copy.vae is None
    latent = tiny_pipeline(tiny_unet(channels=4), vae=tiny_kl())
    copy = SlimDiffusionPipeline.from_pipe(latent)
    assert copy.unet is latent.unet and copy.vae is latent.vae
    plain = tiny_pipeline(tiny_unet(cls=UNet2DModel))
    assert SlimDiffusionPipeline.from_pipe(plain).unet is plain.unet


# --- plain and slim classes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("slim_cls", [SlimUNet2DModel, SlimUNet2DConditionModel])
def test_a_plain_config_stays_plain_in_a_slim_class(
    tmp_path,
    tiny_unet,
    tiny_condition_unet,
    unet_inputs,
    unet_output,
    assert_same_parameters,
    assert_outputs_close,
    slim_cls,
):
    if slim_cls is SlimUNet2DModel:
        plain = tiny_unet(cls=UNet2DModel)
    else:
        plain = tiny_condition_unet(classes=None, cls=UNet2DConditionModel)
    inputs = unet_inputs(plain)
    if slim_cls is SlimUNet2DConditionModel:
        inputs["encoder_hidden_states"] = torch.randn(2, 3, 12, generator=torch.Generator().manual_seed(0))
    plain.save_pretrained(tmp_path)
    loaded = slim_cls.from_pretrained(tmp_path)
    assert loaded.config.wavelet_gating is False
    assert_same_parameters(plain, loaded)
    assert_outputs_close(unet_output(loaded, inputs), unet_output(plain, inputs))


def test_a_slim_config_saved_with_default_gating_reloads_gated(tmp_path, tiny_unet):
    config = {k: v for k, v in tiny_unet().config.items() if k != "wavelet_gating" and not k.startswith("_")}
    unet = SlimUNet2DModel(**config)
    assert unet.config.wavelet_gating is True  # the class default, recorded as a default by diffusers
    unet.save_pretrained(tmp_path)
    assert SlimUNet2DModel.from_pretrained(tmp_path).config.wavelet_gating is True


def test_plain_unet2dmodel_on_a_slim_folder_loads_something_else(saved, unet_inputs, unet_output, caplog):
    """What README documents: diffusers' plain class cannot hold the wavelet gates — it warns, initialises its own
    down/up-samplers at random, and its outputs are not the slim model's. AutoModel gives the slim class."""
    pipe, folder = saved
    with caplog.at_level("WARNING"):
        plain = UNet2DModel.from_pretrained(folder, subfolder="unet")
    assert type(plain) is UNet2DModel
    inputs = unet_inputs(pipe.unet)
    assert not torch.allclose(unet_output(plain, inputs), unet_output(pipe.unet, inputs), atol=1e-3)
