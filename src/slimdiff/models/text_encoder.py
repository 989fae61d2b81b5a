"""The frozen text encoder of text-conditioned models: a CLIP text model and its tokenizer from transformers
(the paper's `openai/clip-vit-large-patch14`, by hub id or local folder), giving (B, 77, D) contexts."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from slimdiff.errors import loading


class TextEncoder(nn.Module):
    """prompts → `encoder_hidden_states` (B, max_length, hidden_size): padded to the tokenizer's max length,
    the last hidden state of the frozen CLIP text model, as Stable Diffusion and LDM's text models use it."""

    def __init__(self, tokenizer, model: nn.Module):
        super().__init__()
        self.tokenizer, self.model = tokenizer, model.eval().requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def forward(self, prompts: list[str]) -> torch.Tensor:
        return encode_text(self.tokenizer, self.model, prompts)


@torch.no_grad()
def encode_text(tokenizer, text_encoder: nn.Module, prompts: list[str]) -> torch.Tensor:
    """prompts → (B, max_length, hidden_size): tokens padded to the tokenizer's max length (truncated beyond),
    the text model's last hidden state, on the text model's device and in its dtype."""
    tokens = tokenizer(
        list(prompts),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = next(text_encoder.parameters()).device
    return text_encoder(tokens.input_ids.to(device)).last_hidden_state


def load_text_encoder(source: str | Path, **hub_kwargs) -> TextEncoder:
    """CLIPTokenizer + CLIPTextModel from a folder or hub id (`tokenizer/` and `text_encoder/` subfolders of a
    pipeline are found); safetensors only."""
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()  # a frozen encoder loads in a moment; its bars would clutter the run's
    from slimdiff.models.loading import check_source

    check_source(source, "CLIP text encoder")
    path = Path(source)
    subfolders = ("tokenizer", "text_encoder") if (path / "text_encoder").is_dir() else (None, None)
    with loading(
        f"the CLIP text encoder in {source}", "pass a folder or hub id with a CLIP tokenizer and text model"
    ):
        tokenizer = CLIPTokenizer.from_pretrained(str(source), subfolder=subfolders[0] or "", **hub_kwargs)
        model = CLIPTextModel.from_pretrained(
            str(source), subfolder=subfolders[1] or "", use_safetensors=True, **hub_kwargs
        )
    return TextEncoder(tokenizer, model)
