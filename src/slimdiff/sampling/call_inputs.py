"""What a `SlimDiffusionPipeline` call is given, turned into what its UNet takes — with the call conventions of
diffusers' `StableDiffusionPipeline`: prompts (and negative prompts) through the pipeline's own tokenizer and
text encoder (`encode_prompt`), class labels by number or by the names saved with the pipeline, `height` /
`width` in pixels → the latent size, and the options every call checks first.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch
from diffusers import SchedulerMixin
from diffusers.utils import numpy_to_pil

from slimdiff.models.inputs import condition_input, sample_hw
from slimdiff.models.text_encoder import encode_text
from slimdiff.sampling.guidance import NOT_TEXT
from slimdiff.sampling.solvers import build_scheduler, get_sampler, sampling_copy

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
Prompt = str | Sequence[str]


class CallState:
    """What a pipeline call exposes while it runs, as diffusers pipelines do: a step-end callback reads these
    (diffusers' callback tests raise `pipe._guidance_scale` each step and expect the call to follow)."""

    _interrupt, _num_timesteps, _guidance_scale, _guided = False, 0, None, False

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` in a step-end callback to stop after that step (as in diffusers)."""
        return self._interrupt

    @property
    def num_timesteps(self) -> int:
        """Solver steps (model calls) of the current or last call."""
        return self._num_timesteps

    @property
    def guidance_scale(self) -> float | None:
        """w of the current call (None: no guidance); a step-end callback may change `pipe._guidance_scale`."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guided


def check_options(output_type: str, steps: int, tensor_inputs: Sequence[str], allowed: Sequence[str]) -> None:
    """Refuse an unknown output type, fewer than one step, or callback tensor inputs the pipeline has not."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"unknown output_type {output_type!r}; valid: {', '.join(OUTPUT_TYPES)}")
    if steps < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {steps}")
    unknown = set(tensor_inputs) - set(allowed)
    if unknown:
        raise ValueError(f"callback tensor inputs {sorted(unknown)} unknown; valid: {list(allowed)}")


def call_scheduler(
    stored: SchedulerMixin,
    sampler: str | None,
    steps: int,
    timesteps: list[int] | None,
    sigmas: list[float] | None,
    device: torch.device | str,
    **step_options,
) -> tuple[SchedulerMixin, dict]:
    """(a fresh scheduler for one call with its timesteps set, the `step_options` its `step` takes and that are
    set): the pipeline's `stored` scheduler as it is, or the preset `sampler` on its noise schedule; `steps`
    evenly spaced by its rule, or the custom `timesteps` / `sigmas` of schedulers that take them."""
    if sampler is None:
        scheduler = sampling_copy(stored)
    else:
        scheduler = build_scheduler(get_sampler(sampler), dict(stored.config))
    if timesteps is not None or sigmas is not None:
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

        retrieve_timesteps(scheduler, None, device, timesteps, sigmas)
    else:
        scheduler.set_timesteps(steps, device=device)
    accepted = inspect.signature(scheduler.step).parameters
    return scheduler, {k: v for k, v in step_options.items() if k in accepted and v is not None}


def output_images(images: torch.Tensor, output_type: str) -> torch.Tensor | np.ndarray | list:
    """Images (B, C, H, W) in [0, 1] as `output_type` asks: "pt" as they are, "np" (B, H, W, C), "pil"."""
    if output_type == "pt":
        return images
    array = images.permute(0, 2, 3, 1).float().cpu().numpy()
    return array if output_type == "np" else numpy_to_pil(array)


def encode_prompt(
    tokenizer,
    text_encoder,
    prompt: Prompt | None,
    device: torch.device | str,
    num_images_per_prompt: int = 1,
    do_classifier_free_guidance: bool = False,
    negative_prompt: Prompt | None = None,
    prompt_embeds: torch.Tensor | None = None,
    negative_prompt_embeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(prompt embeddings, negative prompt embeddings or None without guidance), each (B · k, L, D) for B
    prompts and k = `num_images_per_prompt`, as `StableDiffusionPipeline.encode_prompt` returns them: the last
    hidden state of the text encoder on the prompt's tokens padded to the tokenizer's max length. The negative
    prompt defaults to the empty one, the unconditional input the model learned with caption dropout."""
    if prompt_embeds is None:
        prompt_embeds = encode_text(tokenizer, text_encoder, _texts(prompt))
    if do_classifier_free_guidance and negative_prompt_embeds is None:
        negatives = _texts(negative_prompt or "")
        if len(negatives) == 1:
            negatives = negatives * len(prompt_embeds)
        if len(negatives) != len(prompt_embeds):
            raise ValueError(f"{len(negatives)} negative prompts for {len(prompt_embeds)} prompts")
        negative_prompt_embeds = encode_text(tokenizer, text_encoder, negatives)

    def repeat(embeds: torch.Tensor | None) -> torch.Tensor | None:
        return None if embeds is None else embeds.to(device).repeat_interleave(num_images_per_prompt, dim=0)

    return repeat(prompt_embeds), repeat(negative_prompt_embeds if do_classifier_free_guidance else None)


def _texts(prompt: Prompt | None) -> list[str]:
    if prompt is None:
        raise ValueError("pass prompt or prompt_embeds")
    return [prompt] if isinstance(prompt, str) else list(prompt)


def prompt_inputs(
    pipe,
    batch_size: int,
    prompt: Prompt | None,
    negative_prompt: Prompt | None,
    prompt_embeds: torch.Tensor | None,
    negative_prompt_embeds: torch.Tensor | None,
    guided: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(prompt_embeds, negative_prompt_embeds) of a call: prompts encoded by the pipeline's text encoder (one
    prompt string for every one of `batch_size` samples, as one class label is), embeddings passed through."""
    if prompt is not None and prompt_embeds is not None:
        raise ValueError("pass prompt or prompt_embeds, not both")
    if negative_prompt is not None and negative_prompt_embeds is not None:
        raise ValueError("pass negative_prompt or negative_prompt_embeds, not both")
    if prompt is None and prompt_embeds is None:
        if negative_prompt is not None or negative_prompt_embeds is not None:
            raise ValueError("a negative prompt needs prompt or prompt_embeds (what to guide towards)")
        return None, None
    needs_encoder = prompt is not None or (guided and negative_prompt_embeds is None)
    if needs_encoder and (pipe.tokenizer is None or pipe.text_encoder is None):
        if condition_input(pipe.unet.config) != "encoder_hidden_states":
            raise ValueError(NOT_TEXT)
        if prompt is None:  # embeddings only: say what guidance lacks
            raise ValueError("classifier-free guidance with prompt_embeds needs negative_prompt_embeds")
        raise ValueError(
            "this pipeline has no tokenizer and text_encoder to read a prompt; pass prompt_embeds"
        )
    if isinstance(prompt, str):
        prompt = [prompt] * batch_size
    if not needs_encoder:
        return prompt_embeds, negative_prompt_embeds
    return encode_prompt(
        pipe.tokenizer,
        pipe.text_encoder,
        prompt,
        pipe._execution_device,
        1,
        guided,
        negative_prompt,
        prompt_embeds,
        negative_prompt_embeds,
    )


def class_indices(
    class_labels: int | str | Sequence[int | str] | torch.Tensor | None, names: Sequence[str] | None
) -> int | Sequence[int] | torch.Tensor | None:
    """`class_labels` with every class name replaced by its index in `names` (the pipeline's `class_names`)."""
    if class_labels is None or isinstance(class_labels, (int, torch.Tensor)):
        return class_labels
    labels = [class_labels] if isinstance(class_labels, str) else list(class_labels)
    if not any(isinstance(label, str) for label in labels):
        return class_labels
    if not names:
        raise ValueError(
            "class_labels holds a class name, but this pipeline has no class_names; pass numbers"
        )
    unknown = [label for label in labels if isinstance(label, str) and label not in names]
    if unknown:
        raise ValueError(f"unknown class {unknown[0]!r}; classes: {', '.join(names)}")
    return [names.index(label) if isinstance(label, str) else label for label in labels]


def pixel_factor(vae) -> int:
    """Image side / latent side of a pipeline's decoder: 1 in pixel space, 2^(levels − 1) for an autoencoder,
    a slim decoder's own `factor`."""
    if vae is None:
        return 1
    config = vae.config
    return int(config["factor"]) if "factor" in config else 2 ** (len(config["block_out_channels"]) - 1)


def latent_hw(unet_config, vae, height: int | None, width: int | None) -> tuple[int, int]:
    """The UNet's sample size for images of `height` × `width` pixels (None: the size the model was trained
    at); the UNet halves its input at every level but the last, so the sides must divide down evenly."""
    trained = sample_hw(unet_config)
    if height is None and width is None:
        return trained
    factor = pixel_factor(vae)
    height, width = height or trained[0] * factor, width or trained[1] * factor
    multiple = factor * 2 ** (len(unet_config["block_out_channels"]) - 1)
    if height % multiple or width % multiple or height < 1 or width < 1:
        raise ValueError(f"height and width must be positive multiples of {multiple}, got {height} × {width}")
    return height // factor, width // factor
