"""Evaluation of conditional models: what the samples are conditioned on — balanced class labels, or the
prompts of a prompt file (each distinct prompt encoded once) — and, for class models, labelled held-out real
images (the same images `held_out_images` gives, with their labels) and FID / KID / SWD / spectrum error of
each class's samples against that class's real images."""

from __future__ import annotations

import torch
from torch import Tensor

from slimdiff.data.datasets import draw_held_out
from slimdiff.errors import DataError, ModelError
from slimdiff.metrics import fid
from slimdiff.metrics.spectrum import spectrum_error
from slimdiff.metrics.summary import SCORE_COLUMNS, score_cell
from slimdiff.metrics.swd import swd
from slimdiff.sampling.conditions import class_names, read_prompts

MIN_PER_CLASS = 2  # FID needs a covariance; below this a class is reported as too small


def balanced_labels(n: int, classes: int, seed: int) -> Tensor:
    """`n` labels with every class n // classes or n // classes + 1 times, in a seeded order (so a batch mixes
    classes); drawn from their own generator, so the sampling noise does not change."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 2))
    return (torch.arange(n) % classes)[order]


def model_classes(pipeline, model: str | None = None) -> int | None:
    """The number of real classes of a class-conditional model (None otherwise). A class-context table's
    "no class" row is not counted; for a `num_class_embeds` table (whose last row slimdiff's training keeps
    as "no class") the saved class names decide, and a foreign model without them uses every row."""
    cfg = pipeline.unet.config
    if cfg.get("num_context_classes"):
        return cfg["num_context_classes"]
    if not cfg.get("num_class_embeds"):
        return None
    names = class_names(model) if model is not None else None
    return len(names) if names else cfg["num_class_embeds"]


@torch.no_grad()
def sampling_conditions(
    pipeline, model: str, n: int, seed: int, prompts: str | None = None, guided: bool = False
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor | None]:
    """(per-image inputs, inputs shared by every call, class labels or None) for `n` samples of `pipeline`:
    balanced labels for a class model; for a text model the prompts of the file `prompts` in turn (image i
    gets prompt i mod P), with the empty prompt as the negative when `guided`."""
    classes = model_classes(pipeline, model)
    if classes:
        labels = balanced_labels(n, classes, seed)
        return {"class_labels": labels}, {}, labels
    if prompts is None:
        return {}, {}, None
    texts = read_prompts(prompts)
    distinct = list(dict.fromkeys(texts))
    if pipeline.tokenizer is None or pipeline.text_encoder is None:
        raise ModelError(
            f"{model} carries no text encoder (tokenizer/ and text_encoder/); it was not trained on text"
        )

    def encode(texts: list[str]) -> Tensor:
        return pipeline.encode_prompt(texts, pipeline.text_encoder.device)[0]

    embeds = torch.cat([encode(distinct[i : i + 64]) for i in range(0, len(distinct), 64)])
    position = {text: i for i, text in enumerate(distinct)}
    index = torch.tensor([position[texts[i % len(texts)]] for i in range(n)])
    shared = {"negative_prompt_embeds": encode([""])} if guided else {}
    return {"prompt_embeds": embeds[index]}, shared, None


def class_labelled_real(options, pipeline) -> tuple[Tensor, Tensor, list[str]]:
    """The held-out real images of `options.data` with labels that mean the model's classes: raises DataError
    when the data has no classes, or other ones than the model (by count, or by the names it was saved with)."""
    images, labels, names = labelled_held_out(
        options.data, options.size, options.n_real, options.seed, options.label_column
    )
    classes, saved = model_classes(pipeline, options.target), class_names(options.target)
    if len(names) != classes:
        raise DataError(f"{options.data} has {len(names)} classes, the model {classes}: no per-class metrics")
    if saved is not None and saved != names:
        raise DataError(
            f"the model's classes ({', '.join(saved[:5])}, …) are not {options.data}'s "
            f"({', '.join(names[:5])}, …): no per-class metrics"
        )
    return images, labels, names


def labelled_held_out(
    source: str, size: int, n: int, seed: int = 0, label_column: str | None = None
) -> tuple[Tensor, Tensor, list[str]]:
    """(images, labels, class names) of the `n` held-out real images of `source` — the images
    `held_out_images(source, size, n, seed)` returns, in the same order. Raises DataError when the source
    has no classes (e.g. a folder without class subfolders)."""
    items, dataset = draw_held_out(
        source, size, n, seed, skipped=[], conditioning="class", label_column=label_column
    )  # unreadable files were counted by `held_out_images`' draw
    images = torch.stack([image for image, _ in items])
    return images, torch.tensor([label for _, label in items]), list(dataset.class_names)


def per_class_scores(
    real: Tensor,
    real_labels: Tensor,
    fake: Tensor,
    fake_labels: Tensor,
    names: list[str],
    *,
    metrics: tuple[str, ...] = ("fid", "kid", "swd", "spectrum"),
    features: dict[str, Tensor] | None = None,
    seed: int = 0,
    cutoff: float = 0.5,
) -> dict[str, dict]:
    """{class name: {n_real, n_fake, and of `metrics` swd, spectrum_error, fid, kid}}: each class's samples
    against its real images. FID / KID need the Inception `features` ({"real", "fake"}, rows as the images)."""
    scores = {}
    for label, name in enumerate(names):
        r, f = real_labels == label, fake_labels == label
        entry: dict = {"n_real": int(r.sum()), "n_fake": int(f.sum())}
        if min(entry["n_real"], entry["n_fake"]) < MIN_PER_CLASS:
            entry["skipped"] = f"fewer than {MIN_PER_CLASS} real or generated images"
            scores[name] = entry
            continue
        if "swd" in metrics:
            entry["swd"] = swd(real[r], fake[f], seed=seed)
        if "spectrum" in metrics:
            entry["spectrum_error"] = spectrum_error(real[r], fake[f], cutoff=cutoff)
        if features and "fid" in metrics:
            entry["fid"] = fid.fid_from_features(features["real"][r], features["fake"][f])
        if features and "kid" in metrics:
            entry["kid"] = fid.kid_from_features(features["real"][r], features["fake"][f], seed=seed)
        scores[name] = entry
    return scores


def per_class_table(scores: dict[str, dict]) -> list[str]:
    """Markdown rows: one per class, the columns every scored class has."""
    has = {key for entry in scores.values() for key in entry}
    columns = [c for c in SCORE_COLUMNS if c in has]
    header = ["class", "real", "generated"] + [SCORE_COLUMNS[c] for c in columns]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, entry in scores.items():
        cells = [name, str(entry["n_real"]), str(entry["n_fake"])]
        for column in columns:
            cells.append(score_cell(column, entry.get(column)) if "skipped" not in entry else "–")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def rows_by_class(images: Tensor, labels: Tensor, classes: int, per_row: int = 8) -> Tensor:
    """Up to `per_row` images of each class (first 16 classes), class by class: a grid of `per_row`
    columns then shows one row per class. A class with fewer images is padded with blank (mid-grey) tiles."""
    rows = []
    for label in range(min(classes, 16)):
        chosen = images[labels == label][:per_row]
        blank = torch.zeros(per_row - len(chosen), *images.shape[1:])
        rows.append(torch.cat([chosen, blank]))
    return torch.cat(rows)
