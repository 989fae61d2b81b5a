"""Load any diffusers UNet — a slimdiff checkpoint, a local diffusers folder or a hub id — by one path."""

from __future__ import annotations

from pathlib import Path

from diffusers import ModelMixin, UNet2DConditionModel, UNet2DModel

from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel

UNET_CLASSES: dict[str, type[ModelMixin]] = {
    cls.__name__: cls for cls in (SlimUNet2DModel, SlimUNet2DConditionModel, UNet2DModel, UNet2DConditionModel)
}


def locate_unet(source: str | Path) -> tuple[str, str | None]:
    """(path or hub id, subfolder) of the UNet in `source`: a bare model folder, a pipeline folder with a
    `unet/` subfolder, or a hub id (whose UNet is looked for in `unet/`, then at the top)."""
    path = Path(source)
    if path.is_dir():
        for subfolder in (None, "unet"):
            if (path / (subfolder or "") / "config.json").is_file():
                return str(path), subfolder
        raise FileNotFoundError(f"{path} holds no UNet: expected config.json in it or in {path / 'unet'}")
    if path.exists() or str(source).count("/") != 1:
        raise FileNotFoundError(f"{source} is neither a model folder nor a hub id like 'CompVis/ldm-celebahq-256'")
    for subfolder in ("unet", None):
        try:
            UNet2DModel.load_config(str(source), subfolder=subfolder)
        except OSError:
            continue
        return str(source), subfolder
    raise FileNotFoundError(f"could not find a UNet config for hub id {source!r} (offline, or no such repository)")


def load_unet(source: str | Path, **from_pretrained_kwargs) -> ModelMixin:
    """The UNet in `source` as the class named in its config (slimdiff or plain diffusers)."""
    location, subfolder = locate_unet(source)
    config = UNet2DModel.load_config(location, subfolder=subfolder)
    class_name = config.get("_class_name")
    if class_name not in UNET_CLASSES:
        raise ValueError(f"{source}: {class_name!r} is not a supported UNet; supported: {', '.join(UNET_CLASSES)}")
    return UNET_CLASSES[class_name].from_pretrained(location, subfolder=subfolder, **from_pretrained_kwargs)
