"""`SlimDiffusionPipeline`: sampling from a slim (or any diffusers) UNet, with classifier-free guidance and
trajectory stitching.

One UNet step per solver step; the conditional and unconditional branches of classifier-free guidance run
in one batched call, ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅). Stitching runs the slim model for the first fraction of the
steps and a teacher for the rest: the coarse structure is laid down early in the reverse process and the
detail late, so the slim model draws the layout and the teacher finishes the high frequencies.

It behaves as a diffusers pipeline: once slimdiff is imported, `DiffusionPipeline.from_pretrained` returns it for
its folders and hub ids (see `sampling/folders.py`), it takes diffusers' loading keywords, follows the UNet's
dtype and device, samples with whatever scheduler it holds (`pipe.scheduler = …`) or a named preset, and offers
`num_images_per_prompt`, `callback_on_step_end` and `from_pipe`. A text model carries its `tokenizer` and
`text_encoder` as components and takes `prompt` / `negative_prompt` as `StableDiffusionPipeline` does
(`sampling/call_inputs.py`); a class model takes class names as well as numbers (its `class_names`).
"""

from __future__ import annotations

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
from transformers import CLIPTextModel, CLIPTokenizer

from slimdiff.diffusion import training_scheduler
from slimdiff.errors import loading
from slimdiff.models.loading import FOLDER_FIX, check_finite, load_unet
from slimdiff.models.unet import SlimUNet2DConditionModel, SlimUNet2DModel
from slimdiff.sampling import call_inputs
from slimdiff.sampling.call_inputs import (
    CallState,
    Prompt,
    call_scheduler,
    check_options,
    class_indices,
    latent_hw,
    output_images,
    prompt_inputs,
)
from slimdiff.sampling.folders import (
    diffusers_entry,
    foreign_components,
    local_folder,
    no_loading_bar,
    saved_beside,
)
from slimdiff.sampling.guidance import Denoiser, conditioning, denoiser_output, guided_output, step_end
from slimdiff.sampling.init_image import image_timesteps, prepare_init, resolve_strength
from slimdiff.sampling.solvers import alpha_bar_at, clip_prediction, sampling_scheduler
from slimdiff.sampling.stitching import check_stitch, stitch_plan


class SlimDiffusionPipeline(CallState, DiffusionPipeline):
    """UNet + scheduler (+ optional autoencoder; a text model's tokenizer and text encoder) → images.

    `save_pretrained(folder)` writes the diffusers layout (model_index.json, unet/, scheduler/, vae/, tokenizer/,
    text_encoder/), which `from_pretrained`, `load_pipeline` or — after `import slimdiff` — plain
    `DiffusionPipeline.from_pretrained(folder)` load back.

    A scheduler is used as it is set, with one exception: a DDPMScheduler left at diffusers' sampling defaults
    (leading spacing, clip_sample on — what `training_scheduler()` builds and slimdiff 0.1 saved as "the noise
    schedule") is taken as the noise schedule only and replaced by `sampling_defaults` (trailing spacing, x0
    clipped in pixel space), the settings slimdiff samples with, which `save_pretrained` then writes.
    """

    model_cpu_offload_seq = "text_encoder->unet->vae"
    _optional_components = ["vae", "tokenizer", "text_encoder"]
    _callback_tensor_inputs = ["latents", "prompt_embeds"]

    def __init__(
        self,
        unet: SlimUNet2DModel | SlimUNet2DConditionModel | UNet2DModel | UNet2DConditionModel,
        scheduler: SchedulerMixin,
        vae: VQModel | AutoencoderKL | None = None,
        tokenizer: CLIPTokenizer | None = None,
        text_encoder: CLIPTextModel | None = None,
        class_names: list[str] | None = None,
        default_steps: int | None = None,
    ):
        super().__init__()
        scheduler = sampling_scheduler(scheduler, pixel_space=vae is None)
        self.register_modules(
            unet=unet, scheduler=scheduler, vae=vae, tokenizer=tokenizer, text_encoder=text_encoder
        )
        # settings in model_index.json; default_steps: a step-distilled model samples in N steps unasked
        self.register_to_config(
            class_names=list(class_names) if class_names else None, default_steps=default_steps
        )

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
                pipe = super().from_pretrained(str(folder), **{**saved_beside(folder, index), **kwargs})
            else:
                pipe = cls(**foreign_components(folder, index, kwargs))
        pipe.register_to_config(_name_or_path=source)
        return pipe

    def encode_prompt(
        self, prompt, device, num_images_per_prompt=1, do_classifier_free_guidance=False, **embeds
    ):
        """`StableDiffusionPipeline.encode_prompt`'s (prompt_embeds, negative_prompt_embeds) with this pipeline's
        tokenizer and text encoder; `embeds`: negative_prompt, prompt_embeds, negative_prompt_embeds."""
        args = (prompt, device, num_images_per_prompt, do_classifier_free_guidance)
        return call_inputs.encode_prompt(self.tokenizer, self.text_encoder, *args, **embeds)

    @torch.no_grad()
    def __call__(
        self,
        prompt: Prompt | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        timesteps: list[int] | None = None,
        sigmas: list[float] | None = None,
        guidance_scale: float | None = None,
        negative_prompt: Prompt | None = None,
        num_images_per_prompt: int = 1,
        eta: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end=None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        class_labels: int | str | Sequence[int | str] | torch.Tensor | None = None,
        batch_size: int = 1,
        sampler: str | None = None,
        stitch: tuple[Denoiser, float] | None = None,
        clip_x0: bool | None = None,
        image: PipelineImageInput | None = None,
        mask_image: PipelineImageInput | None = None,
        strength: float | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Sample images. Arguments `StableDiffusionPipeline` has mean what they mean there (guidance: below).

        prompt / negative_prompt: text (a string, or one per sample) read by the pipeline's tokenizer and text
            encoder (`encode_prompt`; one string is drawn `batch_size` times), or prompt_embeds (B, L, D) and
            negative_prompt_embeds (1 or B rows; default under guidance: the empty prompt's).
        class_labels: class numbers or names (`self.config.class_names`); one label is drawn `batch_size` times.
        guidance_scale: w of classifier-free guidance ε̂_∅ + w (ε̂_c − ε̂_∅) (w = 1: the conditional model,
            w = 0 the unconditional one); None (the default): no guidance.
        height / width: in pixels (default: the trained size); other multiples of the UNet's down-sampling.
        num_inference_steps: None: the model's own (`default_steps` in model_index.json, set for a
            step-distilled model), else 50.
        sampler: None samples with `self.scheduler` as set (any diffusers scheduler that runs on the model's DDPM
            noise schedule), or a preset of `slimdiff.sampling.solvers.SAMPLERS` on the stored noise schedule.
        eta: DDIM's η, for any scheduler whose step takes `eta` (None: the scheduler's own default).
        latents: the initial noise (else drawn with `generator`); cast to the UNet's dtype and device.
        num_images_per_prompt: images per class label / prompt (unconditional: per batch_size sample).
        stitch: (teacher, fraction) — this UNet for the first `fraction` of the steps, the teacher after; needs a
            solver that keeps no earlier model outputs (ddpm, ddim, euler, …).
        clip_x0: clip the x0 estimate to [-1, 1]. Default: on for a named sampler in pixel space (no vae), else
            off (`self.scheduler`'s own clip_sample / thresholding decide).
        output_type: "pil", "np" (B, H, W, C) in [0, 1], "pt" (B, C, H, W) in [0, 1], or "latent".
        image / mask_image / strength: image-to-image and inpainting (`sampling/init_image.py`): image(s) in
            [0, 1] of the model's size, one for all samples or one per sample; white mask pixels are repainted;
            `latents` is the noise added; strength s ∈ [0, 1] the share of the steps run (0.8; 1 with a mask).
        """
        if num_inference_steps is None:
            num_inference_steps = self.config.get("default_steps") or 50
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        check_options(
            output_type, num_inference_steps, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        strength = resolve_strength(image, mask_image, strength)
        if image is not None and (timesteps is not None or sigmas is not None or height or width):
            raise ValueError("with an image, the image sets the size and `strength` the steps")
        device, dtype = self._execution_device, getattr(self.unet, "dtype", torch.float32)
        scheduler, extra = call_scheduler(
            self.scheduler,
            sampler,
            num_inference_steps,
            timesteps,
            sigmas,
            device,
            eta=eta,
            generator=generator,
        )
        if stitch is not None:
            check_stitch(stitch, self.unet, scheduler, sampler or type(scheduler).__name__)
        embeds = (prompt_embeds, negative_prompt_embeds, guidance_scale is not None)
        text = prompt_inputs(self, batch_size, prompt, negative_prompt, *embeds)
        labels = class_indices(class_labels, self.config.class_names)
        batch_size, cond, uncond = conditioning(
            self.unet.config, batch_size, labels, *text, guidance_scale, num_images_per_prompt, device, dtype
        )
        hw = latent_hw(self.unet.config, self.vae, height, width)
        shape = (batch_size, self.unet.config.in_channels, *hw)
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
        timesteps, begin = scheduler.timesteps, 0
        if init is not None:
            timesteps, begin = image_timesteps(scheduler, num_inference_steps, strength)
        # an image's trajectory switches to the teacher at the timestep plain sampling does
        models = stitch_plan(self.unet, stitch, len(scheduler.timesteps))[begin:]
        self._interrupt, self._num_timesteps = False, len(timesteps)
        self._guidance_scale, self._guided = guidance_scale, uncond is not None
        noise = latents.to(device, dtype)
        x = noise * scheduler.init_noise_sigma if init is None else init.start(scheduler, noise, timesteps)
        for i, t in enumerate(self.progress_bar(timesteps)):
            if self.interrupt:
                break
            x_in = scheduler.scale_model_input(x, t)
            if uncond is None:
                out = denoiser_output(models[i], x_in, t, cond)
            else:  # read each step: a step-end callback may change it (diffusers' callback tests do)
                out = guided_output(models[i], x_in, t, cond, uncond, self._guidance_scale)
            if clip_x0:
                out = clip_prediction(out, x_in, alpha_bar_at(scheduler, t).to(x_in), prediction_type)
            x = scheduler.step(out, t, x, **extra).prev_sample
            if init is not None:
                x = init.blend(scheduler, x, noise, timesteps[i + 1] if i + 1 < len(timesteps) else None)
            if callback_on_step_end is not None:
                asked = callback_on_step_end_tensor_inputs
                x, cond, uncond = step_end(callback_on_step_end, self, i, t, x, cond, uncond, asked)
                self._guided = uncond is not None

        images = x
        if output_type != "latent":
            pixels = self.decode(x)
            images = output_images(
                (pixels if init is None else init.keep_unmasked(pixels)) / 2 + 0.5, output_type
            )
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
