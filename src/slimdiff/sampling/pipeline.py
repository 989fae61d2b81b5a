"""`SlimDiffusionPipeline`: sampling from a slim (or any diffusers) UNet, with classifier-free guidance and
trajectory stitching.

One UNet step per solver step; the conditional and unconditional branches of classifier-free guidance run
in one batched call, ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅). Stitching runs the slim model for the first fraction of the
steps and a teacher for the rest: the coarse structure is laid down early in the reverse process and the
detail late, so the slim model draws the layout and the teacher finishes the high frequencies.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import diffusers
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from slimdiff.errors import ModelError
from slimdiff.models.autoencoders import CLASS_KINDS, load_autoencoder
from slimdiff.models.inputs import sample_hw
from slimdiff.models.loading import load_unet
from slimdiff.sampling.guidance import Denoiser, denoiser_output, guided_output
from slimdiff.sampling.schedule import training_scheduler
from slimdiff.sampling.solvers import SAMPLERS, build_scheduler, clip_prediction, get_sampler
from slimdiff.sampling.stitching import stitch_plan

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def _channels(model: Denoiser) -> tuple[int, int]:
    return model.config.in_channels, model.config.out_channels


class SlimDiffusionPipeline(DiffusionPipeline):
    """UNet + scheduler (+ optional autoencoder) → images.

    `save_pretrained(folder)` writes the diffusers layout (model_index.json, unet/, scheduler/, vae/), which
    `SlimDiffusionPipeline.from_pretrained(folder)` (or `load_pipeline`) loads back.
    """

    model_cpu_offload_seq = "unet->vae"
    _optional_components = ["vae"]

    def __init__(self, unet, scheduler: SchedulerMixin, vae=None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae)

    @classmethod
    def from_pretrained(cls, source: str | Path) -> SlimDiffusionPipeline:
        """Load a folder written by `save_pretrained`, or any diffusers pipeline folder (or hub id) with a
        UNet, a scheduler and optionally an autoencoder (`vae/` or `vqvae/`, e.g. an `LDMPipeline`).

        Components are loaded here rather than by diffusers, which resolves a component's class only from the
        libraries it knows; the UNet goes through `load_unet`, the scheduler and autoencoder must be diffusers
        classes (nothing else named in model_index.json is imported).
        """
        folder = Path(source) if Path(source).is_dir() else Path(cls.download(str(source)))
        index = cls.load_config(str(folder))
        vae_name = "vqvae" if "vqvae" in index else "vae"
        vae_class = (index.get(vae_name) or (None, None))[1]
        if vae_class is None:
            vae = None
        elif index.get("_class_name") == cls.__name__:
            vae = _diffusers_component(folder, index, vae_name)
        elif vae_class in CLASS_KINDS:
            # A foreign pipeline's autoencoder config may not hold the scale its UNet was trained with
            # (LDM trains on unscaled VQ latents); load_autoencoder knows the conventions and records it.
            vae = load_autoencoder(CLASS_KINDS[vae_class], str(folder / vae_name)).model
        else:
            raise ModelError(f"{folder}: autoencoder {vae_class} is not one of {', '.join(CLASS_KINDS)}")
        return cls(
            unet=load_unet(folder / "unet"),
            scheduler=_diffusers_component(folder, index, "scheduler"),
            vae=vae,
        )

    def _conditioning(
        self,
        batch_size: int,
        class_labels: int | Sequence[int] | torch.Tensor | None,
        prompt_embeds: torch.Tensor | None,
        negative_prompt_embeds: torch.Tensor | None,
        guidance_scale: float | None,
    ) -> tuple[int, dict, dict | None]:
        """(batch size, conditional kwargs, unconditional kwargs or None without guidance)."""
        if class_labels is not None and prompt_embeds is not None:
            raise ValueError("pass class_labels or prompt_embeds, not both")
        if class_labels is None and prompt_embeds is None:
            if guidance_scale is not None:
                raise ValueError("guidance_scale needs class_labels or prompt_embeds to guide towards")
            return batch_size, {}, None
        if prompt_embeds is not None:
            if guidance_scale is None:
                return prompt_embeds.shape[0], {"encoder_hidden_states": prompt_embeds}, None
            if negative_prompt_embeds is None:
                raise ValueError("classifier-free guidance with prompt_embeds needs negative_prompt_embeds")
            negative = negative_prompt_embeds.expand(prompt_embeds.shape[0], -1, -1)
            return (
                prompt_embeds.shape[0],
                {"encoder_hidden_states": prompt_embeds},
                {"encoder_hidden_states": negative},
            )
        null_label = getattr(self.unet.config, "num_context_classes", None)
        # A class-context table has K + 1 rows; the last one, label K, is "no class".
        classes = null_label + 1 if null_label else getattr(self.unet.config, "num_class_embeds", None)
        if classes is None:
            raise ValueError("class_labels given, but this model is not class-conditional")
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        if labels.min() < 0 or labels.max() >= classes:
            raise ValueError(f"class labels must lie in [0, {classes - 1}], got {labels.tolist()}")
        if labels.numel() == 1:
            labels = labels.expand(batch_size)
        if guidance_scale is None:
            return labels.numel(), {"class_labels": labels}, None
        if null_label is None:
            raise ValueError(
                "classifier-free guidance on class labels needs a model with num_context_classes"
            )
        return labels.numel(), {"class_labels": labels}, {"class_labels": torch.full_like(labels, null_label)}

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 50,
        sampler: str | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        guidance_scale: float | None = None,
        stitch: tuple[Denoiser, float] | None = None,
        clip_x0: bool | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> ImagePipelineOutput | tuple:
        """Sample images.

        sampler: a name from `slimdiff.sampling.solvers.SAMPLERS` (ddpm, ddim, pndm, dpm++, unipc, deis, euler), built
            from the stored scheduler's noise schedule; None uses the stored scheduler's class.
        eta: DDIM's η (0 deterministic). latents: the initial noise (else drawn with `generator`).
        class_labels / prompt_embeds (+ negative_prompt_embeds): conditioning; guidance_scale w turns on
            classifier-free guidance (w = 1 is the conditional model, w = 0 the unconditional one).
        stitch: (teacher, fraction) — this pipeline's UNet for the first `fraction` of the steps, the teacher
            after; needs a single-step sampler (ddpm, ddim, euler).
        clip_x0: clip the x0 estimate to [-1, 1]; default on in pixel space (no vae), off in latent space.
        output_type: "pil", "np" (B, H, W, C) in [0, 1], "pt" (B, C, H, W) in [0, 1], or "latent".
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; valid: {', '.join(OUTPUT_TYPES)}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        kind = get_sampler(sampler, self.scheduler)
        scheduler = build_scheduler(kind, dict(self.scheduler.config))
        if stitch is not None:
            if kind.keeps_model_outputs:
                single = [s.name for s in SAMPLERS.values() if not s.keeps_model_outputs]
                raise ValueError(
                    f"stitching needs a sampler that keeps no previous model outputs ({', '.join(single)}); "
                    f"{kind.name} would mix the two models' outputs in one update"
                )
            if _channels(stitch[0]) != _channels(self.unet):
                raise ValueError(
                    f"stitch teacher maps {_channels(stitch[0])} channels but the model {_channels(self.unet)}; "
                    "both must work on the same (latent) space"
                )
        batch_size, conditioning, unconditioning = self._conditioning(
            batch_size, class_labels, prompt_embeds, negative_prompt_embeds, guidance_scale
        )
        shape = (batch_size, self.unet.config.in_channels, *sample_hw(self.unet.config))
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        clip = self.vae is None if clip_x0 is None else clip_x0
        prediction_type = scheduler.config.prediction_type

        scheduler.set_timesteps(num_inference_steps, device=latents.device)
        step_kwargs = inspect.signature(scheduler.step).parameters
        extra = {k: v for k, v in {"eta": eta, "generator": generator}.items() if k in step_kwargs}
        models = stitch_plan(self.unet, stitch, len(scheduler.timesteps))
        x = latents * scheduler.init_noise_sigma
        for i, t in enumerate(self.progress_bar(scheduler.timesteps)):
            x_in = scheduler.scale_model_input(x, t)
            if unconditioning is None:
                out = denoiser_output(models[i], x_in, t, conditioning)
            else:
                out = guided_output(models[i], x_in, t, conditioning, unconditioning, guidance_scale)
            if clip:
                out = clip_prediction(out, x_in, scheduler.alphas_cumprod[int(t)].to(x_in), prediction_type)
            x = scheduler.step(out, t, x, **extra).prev_sample

        images = x if output_type == "latent" else self.decode(x) / 2 + 0.5
        if output_type in ("np", "pil"):
            images = images.permute(0, 2, 3, 1).float().cpu().numpy()
        if output_type == "pil":
            images = self.numpy_to_pil(images)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images in [-1, 1] (B, C, H, W); the autoencoder's scaling factor undoes the training scale.
        (`__call__` returns them in [0, 1], as diffusers pipelines do.)"""
        x = latents
        if self.vae is not None:
            x = self.vae.decode(latents / getattr(self.vae.config, "scaling_factor", 1.0)).sample
        return x.clamp(-1, 1)


def _diffusers_component(folder: Path, index: dict, name: str):
    library, class_name = index.get(name) or (None, None)
    if library != "diffusers" or not hasattr(diffusers, str(class_name)):
        raise ModelError(f"{folder}: component {name} is {library}.{class_name}, not a diffusers class")
    cls = getattr(diffusers, class_name)
    # models load from safetensors only (a pickled .bin could run code); schedulers are JSON
    safe = {"use_safetensors": True} if issubclass(cls, diffusers.ModelMixin) else {}
    return cls.from_pretrained(folder / name, **safe)


def load_pipeline(source: str | Path) -> SlimDiffusionPipeline:
    """The pipeline in `source`: a pipeline folder (slimdiff's or diffusers', see `from_pretrained`), a slimdiff
    run folder (its `model/`), or a bare UNet folder, which gets the training scheduler (sampling/schedule.py) and no
    autoencoder. A hub id is loaded as a pipeline repository, else as a bare UNet."""
    path = Path(source)
    for folder in (path, path / "model"):
        if (folder / "model_index.json").is_file():
            return SlimDiffusionPipeline.from_pretrained(folder)
    if not path.exists() and str(source).count("/") == 1:
        try:
            return SlimDiffusionPipeline.from_pretrained(str(source))
        except OSError:
            pass  # not a pipeline repository (or offline): try it as a bare UNet
    return SlimDiffusionPipeline(unet=load_unet(source), scheduler=training_scheduler())
