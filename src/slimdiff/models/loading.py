"""Load any diffusers UNet — a slimdiff run or model folder, a local diffusers folder or a hub id — by one path."""

from __future__ import annotations

from pathlib import Path

from diffusers import ModelMixin, UNet2DConditionModel, UNet2DModel

from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel

UNET_CLASSES: dict[str, type[ModelMixin]] = {
    cls.__name__: cls
    for cls in (SlimUNet2DModel, SlimUNet2DConditionModel, UNet2DModel, UNet2DConditionModel)
}


def locate_unet(source: str | Path, **hub_kwargs) -> tuple[str, str | None]:
    """(path or hub id, subfolder) of the UNet in `source`.

    `source` may be a bare model folder, a pipeline folder with `unet/`, a slimdiff run folder (its `model/`),
    or a hub id, whose UNet is looked for in `unet/`, then at the top. `hub_kwargs` (cache_dir,
    local_files_only, revision, token) go to the hub look-up.
    """
    path = Path(source)
    if path.is_dir():
        for subfolder in (None, "unet", "model/unet"):
            if (path / (subfolder or "") / "config.json").is_file():
                return (str(path / "model"), "unet") if subfolder == "model/unet" else (str(path), subfolder)
        raise FileNotFoundError(
            f"{path} holds no UNet: expected config.json in it, in unet/ or in model/unet/"
        )
    if path.exists() or str(source).count("/") != 1:
        raise FileNotFoundError(
            f"{source} is neither a model folder nor a hub id like 'CompVis/ldm-celebahq-256'"
        )
    if path.parent.is_dir():  # e.g. a mistyped runs/… folder: say so instead of asking the hub
        raise FileNotFoundError(f"no folder {source} (its parent {path.parent} exists here: a typo?)")
    for subfolder in ("unet", None):
        try:
            UNet2DModel.load_config(str(source), subfolder=subfolder, **hub_kwargs)
        except OSError:
            continue
        return str(source), subfolder
    raise FileNotFoundError(
        f"no UNet config found for hub id {source!r} (offline, not cached, or no such repository)"
    )


def load_unet(source: str | Path, **hub_kwargs) -> ModelMixin:
    """The UNet in `source` as the class its config names (slimdiff or plain diffusers)."""
    location, subfolder = locate_unet(source, **hub_kwargs)
    config = UNet2DModel.load_config(location, subfolder=subfolder, **hub_kwargs)
    class_name = config.get("_class_name")
    if class_name not in UNET_CLASSES:
        raise ValueError(
            f"{source}: {class_name!r} is not a supported UNet; supported: {', '.join(UNET_CLASSES)}"
        )
    return UNET_CLASSES[class_name].from_pretrained(location, subfolder=subfolder, **hub_kwargs)
