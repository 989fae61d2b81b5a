"""One denoiser step, the conditioning of a pipeline call, and classifier-free guidance: ε̂ = ε̂_∅ + w (ε̂_c − ε̂_∅),
both branches in one batched call."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from slimdiff.models.inputs import condition_input

# Any callable (sample, timestep, **conditioning) → tensor or an object with `.sample`: a torch UNet or an
# onnxruntime session wrapper.
Denoiser = Callable[..., object]
NOT_TEXT = "a prompt was given, but this model is not text-conditional (it takes no text context)"


def denoiser_output(model: Denoiser, x: torch.Tensor, t: torch.Tensor, conditioning: dict) -> torch.Tensor:
    """ε̂ (or whatever the model predicts) for the batch `x` at timestep `t`, in `x`'s dtype; inputs go to the
    model in its own dtype (a stitching teacher may differ from the pipeline's UNet)."""
    dtype = getattr(model, "dtype", x.dtype)
    conditioning = {k: v.to(dtype) if v.is_floating_point() else v for k, v in conditioning.items()}
    out = model(x.to(dtype), t.reshape(1).expand(x.shape[0]), **conditioning)
    return (out.sample if hasattr(out, "sample") else out).to(x.dtype)


def guided_output(
    model: Denoiser,
    x: torch.Tensor,
    t: torch.Tensor,
    conditioning: dict,
    unconditioning: dict,
    guidance_scale: float,
) -> torch.Tensor:
    """Classifier-free guidance ε̂_∅ + w (ε̂_c − ε̂_∅), both branches in one batched model call."""
    both = {k: torch.cat([unconditioning[k], conditioning[k]]) for k in conditioning}
    uncond, cond = denoiser_output(model, torch.cat([x, x]), t, both).chunk(2)
    return uncond + guidance_scale * (cond - uncond)


def conditioning(
    config,
    batch_size: int,
    class_labels: int | Sequence[int] | torch.Tensor | None,
    prompt_embeds: torch.Tensor | None,
    negative_prompt_embeds: torch.Tensor | None,
    guidance_scale: float | None,
    per_prompt: int = 1,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[int, dict, dict | None]:
    """(batch size, conditional kwargs, unconditional kwargs or None without guidance) for a UNet with `config`.

    Every condition row (a class label, a prompt embedding, or each of `batch_size` unconditional samples) gives
    `per_prompt` images, one after another (diffusers' `num_images_per_prompt`). Embeddings follow the UNet's
    `device` and `dtype`, labels its device."""
    if per_prompt < 1:
        raise ValueError(f"num_images_per_prompt must be at least 1, got {per_prompt}")
    n, cond, uncond = _rows(
        config, batch_size, class_labels, prompt_embeds, negative_prompt_embeds, guidance_scale
    )

    def place(kwargs: dict | None) -> dict | None:
        if kwargs is None:
            return None
        moved = {k: v.to(device, dtype if v.is_floating_point() else v.dtype) for k, v in kwargs.items()}
        return {k: v.repeat_interleave(per_prompt, dim=0) for k, v in moved.items()}

    return n * per_prompt, place(cond), place(uncond)


def _rows(config, batch_size, class_labels, prompt_embeds, negative_prompt_embeds, guidance_scale):
    if class_labels is not None and prompt_embeds is not None:
        raise ValueError("pass class_labels or prompt_embeds, not both")
    if class_labels is None and prompt_embeds is None:
        if guidance_scale is not None:
            raise ValueError("guidance_scale needs class_labels or prompt_embeds to guide towards")
        return batch_size, {}, None
    if prompt_embeds is not None:
        if condition_input(config) != "encoder_hidden_states":
            raise ValueError(NOT_TEXT)
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
    null_label = getattr(config, "num_context_classes", None)
    # A class-context table has K + 1 rows; the last one, label K, is "no class".
    classes = null_label + 1 if null_label else getattr(config, "num_class_embeds", None)
    if classes is None:
        raise ValueError("class_labels given, but this model is not class-conditional")
    labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
    if labels.min() < 0 or labels.max() >= classes:
        # the null row of a class-context table is accepted (an unconditional draw) but not offered
        real = null_label or classes
        raise ValueError(f"class labels must lie in [0, {real - 1}], got {labels.tolist()}")
    if labels.numel() == 1:
        labels = labels.expand(batch_size)
    if guidance_scale is None:
        return labels.numel(), {"class_labels": labels}, None
    if null_label is None:
        raise ValueError("classifier-free guidance on class labels needs a model with num_context_classes")
    return labels.numel(), {"class_labels": labels}, {"class_labels": torch.full_like(labels, null_label)}


def step_end(
    callback: Callable, pipe, i: int, t: torch.Tensor, x: torch.Tensor, cond: dict, uncond: dict | None, asked
) -> tuple[torch.Tensor, dict, dict | None]:
    """A step-end callback's turn, given what diffusers' pipelines give: `latents` and `prompt_embeds` (under
    guidance the unconditional rows, then the conditional ones, as diffusers concatenates them; None for a model
    without text). What it returns replaces them. Under guidance, prompt embeddings with fewer rows than that end
    guidance: the later steps run the conditional branch alone, on the returned rows if there is one per image,
    else on its own (diffusers' `SDCFGCutoffCallback` keeps batch 1's conditional row and sets the scale to 0)."""
    key, rows = "encoder_hidden_states", x.shape[0]
    embeds = cond.get(key)
    if embeds is not None and uncond is not None:
        embeds = torch.cat([uncond[key], embeds])
    returned = callback(pipe, i, t, {name: {"latents": x, "prompt_embeds": embeds}[name] for name in asked})
    x, new = returned.pop("latents", x), returned.get("prompt_embeds", embeds)
    if new is embeds:
        return x, cond, uncond
    if embeds is None:
        raise ValueError("a step-end callback returned prompt_embeds, but this model takes no text")
    if new.shape[1:] != embeds.shape[1:]:
        raise ValueError(
            f"a step-end callback returned prompt_embeds of shape {tuple(new.shape)}, not (N, *{tuple(embeds.shape[1:])})"
        )
    if uncond is not None and new.shape[0] == 2 * rows:
        return x, {**cond, key: new[rows:]}, {**uncond, key: new[:rows]}
    if new.shape[0] == rows:
        return x, {**cond, key: new}, None
    if uncond is not None and new.shape[0] < rows:
        return x, cond, None
    raise ValueError(f"a step-end callback returned prompt_embeds with {new.shape[0]} rows for {rows} images")
