"""`SlimDiffusionPipeline`: sampling from a slim (or any diffusers) UNet, with classifier-free guidance and
trajectory stitching.

One UNet step per solver step; the conditional and unconditional branches of classifier-free guidance run
in one batched call, ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅). Stitching runs the slim model for the first fraction of the
steps and a teacher for the rest: the coarse structure is laid down early in the reverse process and the
detail late, so the slim model draws the layout and the teacher finishes the high frequencies.

It behaves as a diffusers pipeline: once slimdiff is imported, `DiffusionPipeline.from_pretrained` returns it for
its folders and hub ids (see `sampling/folders.py`), it takes diffusers' loading keywords, follows the UNet's
dtype and device, samples with whatever scheduler it holds (`pipe.scheduler = …`) or a named preset, and offers
`num_images_per_prompt`, `callback_on_step_end` and `from_pipe`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    ImagePipelineOutput,
    SchedulerMixin,
    UNet2DConditionModel,
    UNet2DModel,
    VQModel,
)
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput
from diffusers.utils.torch_utils import randn_tensor

from slimdiff.diffusion import training_scheduler
from slimdiff.errors import loading
from slimdiff.models.inputs import sample_hw
from slimdiff.models.loading import FOLDER_FIX, check_finite, load_unet
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel
from slimdiff.sampling.folders import diffusers_entry, foreign_components, local_folder, no_loading_bar
from slimdiff.sampling.guidance import Denoiser, conditioning, denoiser_output, guided_output
from slimdiff.sampling.init_image import image_timesteps, prepare_init, resolve_strength
from slimdiff.sampling.solvers import (
    alpha_bar_at,
    build_scheduler,
    clip_prediction,
    get_sampler,
    is_bare_noise_schedule,
    sampling_copy,
    sampling_defaults,
)
from slimdiff.sampling.stitching import check_stitch, stitch_plan

OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class SlimDiffusionPipeline(DiffusionPipeline):
    """UNet + scheduler (+ optional autoencoder) → images.

    `save_pretrained(folder)` writes the diffusers layout (model_index.json, unet/, scheduler/, vae/), which
    `SlimDiffusionPipeline.from_pretrained(folder)`, `load_pipeline` or — after `import slimdiff` — plain
    `DiffusionPipeline.from_pretrained(folder)` load back.

    A scheduler is used as it is set, with one exception: a DDPMScheduler left at diffusers' sampling defaults
    (leading spacing, clip_sample on — what `training_scheduler()` builds and slimdiff 0.1 saved as "the noise
    schedule") is taken as the noise schedule only and replaced by `sampling_defaults` (trailing spacing, x0
    clipped in pixel space), the settings slimdiff samples with, which `save_pretrained` then writes.
    """

    model_cpu_offload_seq = "unet->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        unet: SlimUNet2DModel | SlimUNet2DConditionModel | UNet2DModel | UNet2DConditionModel,
        scheduler: SchedulerMixin,
        vae: VQModel | AutoencoderKL | None = None,
        default_steps: int | None = None,
    ):
        super().__init__()
        if is_bare_noise_schedule(scheduler):
            scheduler = sampling_defaults(scheduler.config, pixel_space=vae is None)
        self.register_modules(unet=unet, scheduler=scheduler, vae=vae)
        # saved in model_index.json: a step-distilled model samples in its own N steps with no arguments
        self.register_to_config(default_steps=default_steps)
        self._interrupt, self._num_timesteps, self._guidance_scale = False, 0, None

    def register_to_config(self, **kwargs):
        # components whose class slimdiff registered with diffusers are recorded as ["diffusers", class]
        super().register_to_config(**{k: diffusers_entry(v) for k, v in kwargs.items()})

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> SlimDiffusionPipeline:
        """Load a folder written by `save_pretrained`, or any diffusers pipeline folder (or hub id) with a
        UNet, a scheduler and optionally an autoencoder (`vae/` or `vqvae/`, e.g. an `LDMPipeline`).

        Takes diffusers' keywords (dtype / torch_dtype, variant, device_map, local_files_only, revision, token,
        cache_dir, …). Weights load from safetensors only unless `use_safetensors=False` is passed (a pickled
        .bin can run code). Hub ids go through `DiffusionPipeline.download`.
        """
        kwargs.setdefault("use_safetensors", True)
        source = str(pretrained_model_name_or_path)
        folder, index = local_folder(cls, source, kwargs)
        with no_loading_bar():
            if index.get("_class_name") == cls.__name__:
                pipe = super().from_pretrained(str(folder), **kwargs)
            else:
                pipe = cls(**foreign_components(folder, index, kwargs))
        pipe.register_to_config(_name_or_path=source)
        return pipe

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` in a step-end callback to stop after that step (as in diffusers)."""
        return self._interrupt

    @property
    def guidance_scale(self) -> float | None:
        """w of the current or last call; a step-end callback may set `pipe._guidance_scale` for the steps after
        it (as in diffusers)."""
        return self._guidance_scale

    @property
    def num_timesteps(self) -> int:
        """Solver steps (model calls) of the current or last call."""
        return self._num_timesteps

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        eta: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        class_labels: int | Sequence[int] | torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        stitch: tuple[Denoiser, float] | None = None,
        clip_x0: bool | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        image: PipelineImageInput | None = None,
        mask_image: PipelineImageInput | None = None,
        strength: float | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Sample images.

        num_inference_steps: solver steps; None: the model's own (`default_steps` in model_index.json, set for a
            step-distilled model), else 50.
        sampler: None samples with `self.scheduler` exactly as set (any diffusers scheduler that runs on the model's
            DDPM noise schedule; others are refused with the reason), or a preset name from
            `slimdiff.sampling.solvers.SAMPLERS` (ddpm, ddim, …, euler, lcm) built from the stored
            scheduler's noise schedule.
        eta: DDIM's η, passed to any scheduler whose step takes `eta` (None: the scheduler's own default).
        latents: the initial noise (else drawn with `generator`); cast to the UNet's dtype and device.
        class_labels / prompt_embeds (+ negative_prompt_embeds): conditioning; guidance_scale w turns on
            classifier-free guidance (w = 1 is the conditional model, w = 0 the unconditional one).
        num_images_per_prompt: images per class label / prompt embedding (unconditional: per batch_size sample).
        stitch: (teacher, fraction) — this pipeline's UNet for the first `fraction` of the steps, the teacher
            after; needs a solver that keeps no earlier model outputs (ddpm, ddim, euler, …).
        clip_x0: clip the x0 estimate to [-1, 1]. Default: for a named sampler on in pixel space (no vae) and off in
            latent space; for `self.scheduler` off (its own clip_sample / thresholding decide).
        output_type: "pil", "np" (B, H, W, C) in [0, 1], "pt" (B, C, H, W) in [0, 1], or "latent".
        callback_on_step_end: `f(pipe, step, timestep, {"latents": x}) -> dict` after every step (or a diffusers
            `PipelineCallback`); a returned "latents" replaces the current ones.
        image: image-to-image — PIL image(s), numpy / tensor in [0, 1] (as diffusers' VaeImageProcessor takes
            them) of the size the model draws; one image for every sample or one per sample (or per k samples).
            `latents` is then the noise ε added to it.
        mask_image: inpainting — white (1) is repainted, black (0) kept: after every step the kept region is
            the image noised to that step, and the output's kept pixels are the image's (`sampling/init_image.py`).
        strength: s ∈ [0, 1], the share of the `num_inference_steps` run, from the image noised to the first
            one's timestep (1: from pure noise, 0: the image back); default 0.8, or 1 with a mask (diffusers').
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output_type {output_type!r}; valid: {', '.join(OUTPUT_TYPES)}")
        if num_inference_steps is None:
            num_inference_steps = self.config.get("default_steps") or 50
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {num_inference_steps}")
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"callback tensor inputs {sorted(unknown)} unknown; valid: {self._callback_tensor_inputs}"
            )
        strength = resolve_strength(image, mask_image, strength)
        if sampler is None:
            scheduler = sampling_copy(self.scheduler)
        else:
            scheduler = build_scheduler(get_sampler(sampler), dict(self.scheduler.config))
        if stitch is not None:
            check_stitch(stitch, self.unet, scheduler, sampler or type(scheduler).__name__)
        device, dtype = self._execution_device, getattr(self.unet, "dtype", torch.float32)
        batch_size, cond, uncond = conditioning(
            self.unet.config,
            batch_size,
            class_labels,
            prompt_embeds,
            negative_prompt_embeds,
            guidance_scale,
            num_images_per_prompt,
            device,
            dtype,
        )
        shape = (batch_size, self.unet.config.in_channels, *sample_hw(self.unet.config))
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        init = None
        if image is not None:
            init = prepare_init(image, mask_image, self.vae, self.unet.config, batch_size, device, dtype)
        if clip_x0 is None:
            clip_x0 = sampler is not None and self.vae is None
        prediction_type = scheduler.config.prediction_type

        scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps, begin = scheduler.timesteps, 0
        if init is not None:
            timesteps, begin = image_timesteps(scheduler, num_inference_steps, strength)
        step_kwargs = inspect.signature(scheduler.step).parameters
        extra = {
            k: v
            for k, v in {"eta": eta, "generator": generator}.items()
            if k in step_kwargs and v is not None
        }
        # an image's trajectory switches to the teacher at the timestep plain sampling does
        models = stitch_plan(self.unet, stitch, len(scheduler.timesteps))[begin:]
        self._interrupt, self._num_timesteps, self._guidance_scale = False, len(timesteps), guidance_scale
        noise = latents.to(device, dtype)
        x = noise * scheduler.init_noise_sigma if init is None else init.start(scheduler, noise, timesteps)
        for i, t in enumerate(self.progress_bar(timesteps)):
            if self.interrupt:
                break
            x_in = scheduler.scale_model_input(x, t)
            if uncond is None:
                out = denoiser_output(models[i], x_in, t, cond)
            else:
                out = guided_output(models[i], x_in, t, cond, uncond, self._guidance_scale)
            if clip_x0:
                out = clip_prediction(out, x_in, alpha_bar_at(scheduler, t).to(x_in), prediction_type)
            x = scheduler.step(out, t, x, **extra).prev_sample
            if init is not None:
                x = init.blend(scheduler, x, noise, timesteps[i + 1] if i + 1 < len(timesteps) else None)
            if callback_on_step_end is not None:
                tensors = {"latents": x}
                outputs = callback_on_step_end(
                    self, i, t, {k: tensors[k] for k in callback_on_step_end_tensor_inputs}
                )
                x = outputs.pop("latents", x)

        images = x
        if output_type != "latent":
            pixels = self.decode(x)
            images = (pixels if init is None else init.keep_unmasked(pixels)) / 2 + 0.5
        if output_type in ("np", "pil"):
            images = images.permute(0, 2, 3, 1).float().cpu().numpy()
        if output_type == "pil":
            images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images in [-1, 1] (B, C, H, W); the autoencoder's scaling factor undoes the training scale.
        (`__call__` returns them in [0, 1], as diffusers pipelines do.)"""
        x = latents
        if self.vae is not None:
            scale = getattr(self.vae.config, "scaling_factor", 1.0)
            x = self.vae.decode(latents.to(getattr(self.vae, "dtype", latents.dtype)) / scale).sample
        return x.clamp(-1, 1)


def load_pipeline(source: str | Path, **kwargs) -> SlimDiffusionPipeline:
    """The pipeline in `source`: a pipeline folder (slimdiff's or diffusers', see `from_pretrained`), a slimdiff
    run folder (its `model/`), or a bare UNet folder, which gets the training noise schedule (slimdiff/diffusion.py)
    with slimdiff's sampling settings and no autoencoder. A hub id is loaded as a pipeline repository, else as a
    bare UNet. `kwargs` (diffusers' loading keywords) go to `from_pretrained`."""
    path = Path(source)
    with loading(f"the pipeline in {source}", FOLDER_FIX):
        for folder in (path, path / "model"):
            if (folder / "model_index.json").is_file():
                return _finite(SlimDiffusionPipeline.from_pretrained(folder, **kwargs), folder)
        if not path.exists() and str(source).count("/") == 1:
            try:
                return _finite(SlimDiffusionPipeline.from_pretrained(str(source), **kwargs), source)
            except OSError:
                pass  # not a pipeline repository (or offline): try it as a bare UNet
        return SlimDiffusionPipeline(unet=load_unet(source), scheduler=training_scheduler())


def _finite(pipe: SlimDiffusionPipeline, folder: str | Path) -> SlimDiffusionPipeline:
    """`pipe`, after refusing NaN / Inf in its UNet's or autoencoder's weights (`check_finite`)."""
    for name in ("unet", "vae"):
        if getattr(pipe, name, None) is not None:
            check_finite(getattr(pipe, name), Path(folder) / name)
    return pipe
