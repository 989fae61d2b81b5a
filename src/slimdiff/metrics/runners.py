"""One runner per metric of `slimdiff.metrics.evaluate`: each takes the shared `Evaluation` state and returns
its results, or raises `Skip` with the reason it cannot run here (the others still run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DDPMScheduler
from torch import Tensor

from slimdiff.data.latent_cache import source_fingerprint
from slimdiff.metrics import fid, fmnist
from slimdiff.metrics.complexity import count_macs_by_kind, seconds_per_call, steps_per_second
from slimdiff.metrics.conditional import sampling_conditions
from slimdiff.metrics.eps_spectrum import EpsSpectrum, eps_error_spectrum, plot_eps_spectrum
from slimdiff.metrics.spectrum import plot_spectra, spectrum_error
from slimdiff.metrics.swd import swd
from slimdiff.models.autoencoders import Autoencoder
from slimdiff.models.inputs import condition_input, example_inputs, sample_hw
from slimdiff.models.loading import load_unet
from slimdiff.models.size import count_params
from slimdiff.sampling.generate import generate


class Skip(Exception):
    """This metric cannot run here; the message says why."""


@dataclass
class Evaluation:
    """What the runners share: options, output folder, images and the pipeline (None for an image folder)."""

    options: object  # EvalOptions
    out: Path
    track: Callable[[str, int], Callable[[int], None]]
    real: Tensor | None = None
    fake: Tensor | None = None
    pipeline: object | None = None
    plots: dict[str, str] = field(default_factory=dict)
    features: dict[str, Tensor] = field(default_factory=dict)  # Inception features, shared by FID and KID
    tables: dict[str, list[str]] = field(default_factory=dict)  # extra markdown tables for summary.md
    eps_spectrum: EpsSpectrum | None = None
    labels: Tensor | None = None  # class of each evaluated image (class-conditional models)
    real_labels: Tensor | None = None  # class of each real image, in the model's numbering
    class_names: list[str] = field(default_factory=list)
    per_class: dict[str, dict] = field(default_factory=dict)  # per-class scores (see metrics.conditional)
    report: dict = field(default_factory=dict)  # what metrics.json holds, once the metrics have run

    @property
    def unet(self):
        if self.pipeline is None:
            raise Skip("needs a model, not a folder of images")
        return self.pipeline.unet


def inception_scores(ev: Evaluation, which: str) -> dict:
    o, features = ev.options, ev.features
    if "fake" not in features:
        try:
            extractor = fid.inception_extractor(o.inception_weights)
        except fid.FIDUnavailable as error:
            raise Skip(str(error)) from None
        # the fingerprint covers a folder's files (path, size, mtime), so changed data is never served stale
        data = source_fingerprint(o.data, o.size, o.seed + 1, len(ev.real), "image", held_out=True)
        # and the extractor's weights: features of other Inception weights are other features
        key = {
            "data": data,
            "n": len(ev.real),
            "features": fid.INCEPTION_NAME,
            "weights": fid.weights_fingerprint(extractor),
        }
        features["real"] = fid.cached_features(
            key,
            lambda: fid.extract_features(
                ev.real, extractor, progress=ev.track("Inception (real)", len(ev.real))
            ),
        )
        features["fake"] = fid.extract_features(
            ev.fake, extractor, progress=ev.track("Inception (ours)", len(ev.fake))
        )
    if which == "fid":
        return {"fid": fid.fid_from_features(features["real"], features["fake"])}
    return {"kid": fid.kid_from_features(features["real"], features["fake"], seed=o.seed)}


def sliced_wasserstein(ev: Evaluation) -> dict:
    return {"swd": swd(ev.real, ev.fake, seed=ev.options.seed)}


def spectrum(ev: Evaluation) -> dict:
    ev.plots["spectra"] = plot_spectra({"real": ev.real, "evaluated": ev.fake}, ev.out / "spectra.png").name
    return {"spectrum_error": spectrum_error(ev.real, ev.fake, cutoff=ev.options.cutoff)}


def eps_spectrum(ev: Evaluation) -> dict:
    unet, o = ev.unet, ev.options
    condition = condition_input(unet.config)
    if condition == "encoder_hidden_states":
        raise Skip("text-conditional UNets are not supported by eps-spectrum (it feeds no text context)")
    if condition == "class_labels" and ev.real_labels is None:
        raise Skip(
            "a class-conditional model needs labelled real images of its classes (--data with its classes)"
        )
    autoencoder = Autoencoder.of(ev.pipeline.vae)
    x0 = torch.cat([autoencoder.encode(batch) for batch in ev.real.split(o.batch_size)])
    if x0.shape[1:] != (unet.config.in_channels, *sample_hw(unet.config)):
        raise Skip(
            f"the model works on {sample_hw(unet.config)} inputs but the data gives {tuple(x0.shape[1:])}"
        )
    teacher = load_unet(o.teacher) if o.teacher else None
    result = eps_error_spectrum(
        unet,
        x0,
        DDPMScheduler.from_config(ev.pipeline.scheduler.config),  # the model's own noise schedule
        buckets=o.buckets,
        batch_size=o.batch_size,
        seed=o.seed,
        teacher=teacher,
        cutoff=o.cutoff,
        progress=ev.track("ε-error spectrum", o.buckets * len(x0)),
        class_labels=ev.real_labels if condition else None,
    )
    ev.eps_spectrum = result
    ev.plots["eps_spectrum"] = plot_eps_spectrum({"model": result}, ev.out / "eps_spectrum.png").name
    ev.tables[f"ε-error spectrum per timestep bucket (cutoff {o.cutoff:g} Nyquist)"] = result.table()
    return {"eps_spectrum": result.summary()}


def macs(ev: Evaluation) -> dict:
    unet = ev.unet
    kinds = count_macs_by_kind(unet, example_inputs(unet.config, 1, device=unet.device))
    return {"params": count_params(unet), "macs": kinds["conv_linear"], "attention_macs": kinds["attention"]}


def throughput(ev: Evaluation) -> dict:
    unet, o = ev.unet, ev.options
    inputs = example_inputs(unet.config, o.batch_size, device=unet.device)
    return {
        "unet_steps_per_s": steps_per_second(unet, inputs, min_seconds=o.timing_seconds),
        "throughput_batch": o.batch_size,
    }


def sampler_call(options) -> dict:
    """The pipeline arguments that choose the sampler of an evaluation (`EvalOptions`, resolved)."""
    o = options
    return {
        "num_inference_steps": o.steps,
        "sampler": o.scheduler,
        "eta": o.eta,
        "guidance_scale": o.guidance,
    }


def latency(ev: Evaluation) -> dict:
    """Seconds per image at batch 1, end to end through the pipeline with the evaluation's sampler (median)."""
    o, pipeline = ev.options, ev.pipeline
    if pipeline is None:
        raise Skip("seconds per image need a model to sample, not a folder of images")
    per_image, shared, _ = sampling_conditions(
        pipeline, o.target, 1, o.seed, o.prompts, o.guidance is not None
    )
    pipeline.set_progress_bar_config(disable=True)
    call = {**sampler_call(o), **shared}
    seconds = seconds_per_call(
        lambda: generate(pipeline, 1, o.seed, 1, per_image=per_image, **call), min_seconds=o.timing_seconds
    )
    return {"seconds_per_image": seconds}


def fashion_mnist(ev: Evaluation, which: str) -> dict:
    """FD-FMNIST or CAS (slimdiff.metrics.fmnist); skipped with the reason off Fashion-MNIST."""
    o = ev.options
    try:
        if which == "fd":
            return fmnist.fd_fmnist_scores(ev.real, ev.fake, o.data, seed=o.seed + 1)
        return fmnist.cas_scores(ev.fake, ev.labels, ev.class_names, o.data, seed=o.seed)
    except LookupError as why:
        raise Skip(str(why)) from None


RUNNERS: dict[str, Callable[[Evaluation], dict]] = {
    "fid": lambda ev: inception_scores(ev, "fid"),
    "kid": lambda ev: inception_scores(ev, "kid"),
    "swd": sliced_wasserstein,
    "spectrum": spectrum,
    "eps-spectrum": eps_spectrum,
    "macs": macs,
    "throughput": throughput,
    "latency": latency,
    "fd-fmnist": lambda ev: fashion_mnist(ev, "fd"),
    "cas": lambda ev: fashion_mnist(ev, "cas"),
}
