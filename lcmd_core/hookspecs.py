"""Pluggy hook specifications of the `lcmd` project (entry-point group `lcmd`).

Every hook is a registration hook: it receives a `register` callback and calls it once per thing
the plugin provides. Implement them with `lcmd_core.hookimpl` in the module an entry point names.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("lcmd")


@hookspec
def lcmd_register_codecs(register: Callable[..., None]) -> None:
    """Register codecs: `register(name: str, factory)`.

    `factory(options: dict) -> Codec` builds an unfitted codec from its options (the run's
    `data.codec_options`); keep heavy imports (torch, models) inside the factory so the entry-point
    module imports fast. `Codec.load(directory)` restores a saved state into a codec it made.
    """


@hookspec
def lcmd_register_datasets(register: Callable[..., None]) -> None:
    """Register raw data sets: `register(info: DatasetInfo)` (from `lcmd_core.plugins`).

    `info.read(data_root, split) -> (items, labels or None)` reads one split; the first data set a
    plugin registers is its default, which must work offline without `data_root`. When files are
    missing, raise `DataNotFoundError` naming the expected files and where they come from.
    """


@hookspec
def lcmd_register_presets(register: Callable[..., None]) -> None:
    """Register named configurations: `register(name: str, preset: dict, description: str = "")`.

    `preset` is a nested config dict (`{"model": {"width": 64}, "train": {...}}`) merged over the
    `RunConfig` defaults. Every plugin registers `tiny`: a config that trains end to end in under
    a minute on a CPU, used by tests and quick checks.
    """


@hookspec
def lcmd_register_metrics(register: Callable[..., None]) -> None:
    """Register sample-quality metrics: `register(info: MetricInfo)` (from `lcmd_core.plugins`).

    `info.compute(samples, references, codec, context) -> dict[str, float]` scores decoded
    sample items against the decoded items of the evaluated split; `context` is a
    `MetricContext` (the samples' labels, the raw data, a cache directory, a protocol to fill).
    """


@hookspec
def lcmd_register_backbones(register: Callable[..., None]) -> None:
    """Register denoiser networks: `register(name: str, factory)`; `model.backbone` selects one.

    `factory(spec: BackboneSpec) -> torch.nn.Module` (from `lcmd_core.backbone`) builds the
    network for the run's tokens and model options. Its `forward(z, log_snr, labels, self_cond)`
    maps z[B, L, D] (already input-scaled), λ[B], labels[B] or None (id `spec.num_classes` is the
    null class) and self-conditioning [B, L, D] or None to logits[B, L, spec.vocab_size]. Check
    it with `lcmd_core.testing.check_backbone`.
    """
