"""Pipeline folders as diffusers knows them, for `SlimDiffusionPipeline`: the names slimdiff's classes are saved
under, hub downloads, and folders of other diffusers pipelines (e.g. an `LDMPipeline`).

diffusers resolves a pipeline's `_class_name`, and a component listed as ["diffusers", class], only as attributes
of the `diffusers` module — there is no registry — and `DiffusionPipeline.download` refuses any other library
name in `model_index.json` (a module path such as "slimdiff.models.unet"). So `import slimdiff` sets its pipeline
and UNet classes on the `diffusers` module (`register_with_diffusers`), and a pipeline records those components as
["diffusers", class] (`diffusers_entry`): then plain `DiffusionPipeline.from_pretrained` and `AutoModel` load
slimdiff folders and hub ids. Folders written before this (["slimdiff.models.unet", …]) still load from disk, and
from the hub through `SlimDiffusionPipeline.from_pretrained` (`download`).
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import diffusers
from diffusers.utils import logging

from slimdiff.errors import ModelError
from slimdiff.models.autoencoders import CLASS_KINDS, load_autoencoder

# What a component's from_pretrained takes from the pipeline's keywords when slimdiff loads a component itself.
MODEL_KWARGS = ("torch_dtype", "dtype", "variant", "device_map", "use_safetensors", "low_cpu_mem_usage")
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "revision", "token", "proxies")


def register_with_diffusers(*classes: type) -> None:
    """Make `classes` resolvable by name from the `diffusers` module; a class of the same name from another module
    (should diffusers ever ship one) is an error, never overwritten."""
    for cls in classes:
        existing = getattr(diffusers, cls.__name__, None)
        if existing is not None and existing.__module__ != cls.__module__:
            raise ImportError(
                f"diffusers already has a {cls.__name__} ({existing.__module__}); not replacing it"
            )
        setattr(diffusers, cls.__name__, cls)


def diffusers_entry(value):
    """A model_index.json entry: (module path, class) of a class registered with diffusers → ("diffusers", class)."""
    if isinstance(value, (tuple, list)) and len(value) == 2 and str(value[0]).startswith("slimdiff."):
        cls = getattr(sys.modules.get(value[0]), str(value[1]), None)
        if cls is not None and getattr(diffusers, value[1], None) is cls:
            return ("diffusers", value[1])
    return value


@contextmanager
def no_loading_bar():
    """Without diffusers' "Loading pipeline components" bar (slimdiff's commands print one line per outcome)."""
    shown = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            logging.enable_progress_bar()


def local_folder(pipeline_class, source: str, kwargs: dict) -> tuple[Path, dict]:
    """(folder, its model_index.json) of the folder `source` or the local snapshot of hub repository `source`,
    after `check_safe_weights` unless `kwargs` has use_safetensors=False. That False then becomes None in
    `kwargs`: it allows pickles, it does not forbid safetensors (transformers ≥ 5 writes a text encoder as
    safetensors even when asked for .bin, and refuses to read it under use_safetensors=False)."""
    folder = Path(source if Path(source).is_dir() else _download(pipeline_class, source, kwargs))
    index = pipeline_class.load_config(str(folder))
    if kwargs.get("use_safetensors") is False:
        kwargs["use_safetensors"] = None
    else:
        check_safe_weights(folder, index)
    return folder, index


def check_safe_weights(folder: Path, index: dict) -> None:
    """Refuse a pipeline folder where a component holds pickled .bin weights and no safetensors: unpickling can
    run code, so slimdiff loads .bin only when the caller passes `use_safetensors=False` and never falls back to
    it (diffusers' own `DiffusionPipeline.from_pretrained` does, with a warning)."""
    for name in sorted(k for k in index if not k.startswith("_")):
        part = folder / name
        if part.is_dir() and any(part.glob("*.bin")) and not any(part.glob("*.safetensors")):
            raise ModelError(
                f"{part} holds only pickled .bin weights, which can run code when loaded; re-save the pipeline "
                "with safetensors (save_pretrained's default), or pass use_safetensors=False if you trust it"
            )


def _download(pipeline_class, source: str, kwargs: dict) -> str:
    """The local snapshot of hub repository `source` (diffusers' own download: variants, safetensors, cache,
    offline mode), or for a repository saved by slimdiff 0.1 — which diffusers refuses for its module-path entry
    — a plain snapshot of its model_index.json, configs, scheduler and safetensors weights."""
    try:
        return pipeline_class.download(source, **kwargs)
    except ValueError as error:
        if "slimdiff." not in str(error):
            raise
    from huggingface_hub import snapshot_download

    patterns = ["model_index.json", "*/config.json", "*/*.safetensors", "scheduler/*"]
    hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None}
    return snapshot_download(source, allow_patterns=patterns, **hub)


def saved_beside(folder: Path, index: dict) -> dict:
    """What a SlimDiffusionPipeline folder keeps beside its model_index.json instead of in it — a text model's
    tokenizer/ and text_encoder/ (unlisted, as slimdiff 0.1 saved them, or listed as none and added later), a
    class model's class_names.json — as keywords of `from_pretrained`; nothing for a folder that lists them (or
    has none)."""
    from slimdiff.models.text_encoder import load_text_encoder

    saved = {}
    listed = index.get("text_encoder") not in (None, [None, None])
    if not listed and (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir():
        encoder = load_text_encoder(folder)
        saved.update(tokenizer=encoder.tokenizer, text_encoder=encoder.model)
    if "class_names" not in index and (folder / "class_names.json").is_file():
        saved["class_names"] = json.loads((folder / "class_names.json").read_text())
    return saved


def foreign_components(folder: Path, index: dict, kwargs: dict) -> dict:
    """The UNet, scheduler, autoencoder and CLIP text encoder of another diffusers pipeline's folder (an
    `LDMPipeline`: unet/, vqvae/, scheduler/; a `StableDiffusionPipeline`: also tokenizer/, text_encoder/),
    loaded here because their names differ from slimdiff's (vqvae → vae) and because a foreign autoencoder config
    may not hold the scale its UNet was trained with (LDM trains on unscaled VQ latents); `load_autoencoder`
    knows the conventions and records the scale. Other components (a safety checker, …) are ignored."""
    from slimdiff.models.loading import UNET_CLASSES
    from slimdiff.models.text_encoder import load_text_encoder

    model_kwargs = {k: kwargs[k] for k in MODEL_KWARGS if k in kwargs}
    unet_class = (index.get("unet") or (None, None))[1]
    if unet_class not in UNET_CLASSES:
        raise ModelError(f"{folder}: UNet {unet_class} is not one of {', '.join(UNET_CLASSES)}")
    components = {
        "unet": UNET_CLASSES[unet_class].from_pretrained(folder, subfolder="unet", **model_kwargs),
        "scheduler": diffusers_component(folder, index, "scheduler"),
        "vae": None,
    }
    vae_name = "vqvae" if "vqvae" in index else "vae"
    vae_class = (index.get(vae_name) or (None, None))[1]
    if vae_class is not None:
        if vae_class not in CLASS_KINDS:
            raise ModelError(f"{folder}: autoencoder {vae_class} is not one of {', '.join(CLASS_KINDS)}")
        vae = load_autoencoder(CLASS_KINDS[vae_class], str(folder / vae_name)).model
        dtype = kwargs.get("dtype") or kwargs.get("torch_dtype")
        components["vae"] = vae.to(dtype) if dtype is not None else vae
    if (index.get("text_encoder") or (None, None))[1] == "CLIPTextModel":
        encoder = load_text_encoder(folder)
        components.update(tokenizer=encoder.tokenizer, text_encoder=encoder.model)
    return components


def diffusers_component(folder: Path, index: dict, name: str):
    """Component `name` of a pipeline folder, which must be a diffusers class (nothing else is imported)."""
    library, class_name = index.get(name) or (None, None)
    if library != "diffusers" or not hasattr(diffusers, str(class_name)):
        raise ModelError(f"{folder}: component {name} is {library}.{class_name}, not a diffusers class")
    cls = getattr(diffusers, class_name)
    # models load from safetensors only (a pickled .bin could run code); schedulers are JSON
    safe = {"use_safetensors": True} if issubclass(cls, diffusers.ModelMixin) else {}
    return cls.from_pretrained(folder / name, **safe)
