"""Fit a plugin's codec once and encode its data set into token shards (`lcmd prepare`)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .checkpoint import replace_dir
from .codec import Codec, StreamCodec, TokenSpec
from .config import DataConfig
from .plugins import CorruptItemError, DatasetInfo, Plugin, PluginError
from .readback import CodecMarker, check_schema, read_json
from .resources import check_encoding
from .shards import ShardError, check_compatible, read_index, write_shards

CODEC_MARKER = "codec.json"
ENCODE_BATCH = 4096
PREPARE_RECIPE = "prepare.json"  # beside index.json: what the shards were encoded from


@dataclass
class Prepared:
    """A fitted codec, the token spec the model trains on, and where the shards are."""

    codec: Codec
    spec: TokenSpec
    dataset: DatasetInfo
    codec_name: str
    shards_dir: Path


def spec_with_classes(spec: TokenSpec, info: DatasetInfo) -> TokenSpec:
    """The codec's spec with the data set's classes (labels come from the data, not the codec)."""
    return replace(spec, num_classes=info.num_classes, class_names=info.class_names)


def _codec_choice(plugin: Plugin, data: DataConfig) -> tuple[DatasetInfo, str, dict[str, Any]]:
    info = plugin.dataset(data.dataset)
    name = data.codec or info.default_codec
    # The data set's codec options describe its default codec; another codec gets only the user's.
    defaults = info.codec_options if name == info.default_codec else {}
    return info, name, {**defaults, **data.codec_options}


def load_codec(plugin: Plugin, data: DataConfig, codec_dir: Path) -> tuple[Codec, TokenSpec]:
    """Restore the fitted codec saved in `codec_dir` (written by `prepare_data`)."""
    info = plugin.dataset(data.dataset)
    marker = codec_dir / CODEC_MARKER
    if not marker.is_file():
        raise ShardError(
            f"no fitted codec in {codec_dir}; run `lcmd prepare` or `lcmd train` first"
        )
    fix = "re-run `lcmd prepare --out RUN` to fit the codec again"
    saved = check_schema(CodecMarker, read_json(marker, ShardError, fix), marker, ShardError, fix)
    codec = plugin.codec(saved.codec, saved.options)
    try:
        codec.load(codec_dir)
    except PluginError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as err:
        # The codec's files are read back from disk: a damaged one is the user's to fix.
        raise ShardError(
            f"the fitted codec in {codec_dir} cannot be loaded ({type(err).__name__}: {err}); {fix}"
        ) from None
    return codec, spec_with_classes(codec.token_spec, info)


def load_prepared(plugin: Plugin, data: DataConfig, codec_dir: Path, shards_dir: Path) -> Prepared:
    """The `Prepared` of a run whose codec was fitted earlier (its shards are not checked)."""
    codec, spec = load_codec(plugin, data, codec_dir)
    info = plugin.dataset(data.dataset)
    return Prepared(codec, spec, info, data.codec or info.default_codec, shards_dir)


def _read_or_none(path: Path) -> Any:
    """A marker's JSON, or None when it is unreadable (then the work it marks is redone)."""
    try:
        return read_json(path, ShardError, "")
    except ShardError:
        return None


def _fit_and_save(
    codec: Codec,
    info: DatasetInfo,
    root: Path | None,
    codec_dir: Path,
    meta: dict[str, Any],
    log: Any,
) -> None:
    if codec.needs_fit:
        items, _ = info.load("train", root)
        log(f"fitting codec {meta['codec']!r} on {len(items)} items of {info.name}/train")
        codec.fit(items)
    tmp = codec_dir.with_name(f".tmp-{codec_dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    codec.save(tmp)
    (tmp / CODEC_MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    replace_dir(tmp, codec_dir)


def _encode(codec: Codec, items: Sequence[Any]) -> tuple[torch.Tensor, list[int]]:
    """Tokens of the readable items and their indices; unreadable items are left out.

    Batches are encoded whole; a batch with an unreadable item (`CorruptItemError`) is encoded
    item by item so that only that item is dropped.
    """
    parts, kept = [], []
    for start in range(0, len(items), ENCODE_BATCH):
        stop = min(len(items), start + ENCODE_BATCH)
        try:
            parts.append(codec.encode(items[start:stop]))
            kept.extend(range(start, stop))
        except CorruptItemError:
            for i in range(start, stop):
                try:
                    item = items[i]
                except CorruptItemError:
                    continue
                parts.append(codec.encode([item]))
                kept.append(i)
    if not parts:
        raise ShardError("no item of the data set could be read")
    return torch.cat(parts).long(), kept


def _augmented(
    codec: Codec, items: Sequence[Any], kept: list[int], augment: Callable[[Any], Any]
) -> torch.Tensor:
    """Tokens of `augment(item)` for the readable items, in the order of `kept`."""
    parts = [
        codec.encode([augment(items[i]) for i in kept[start : start + ENCODE_BATCH]])
        for start in range(0, len(kept), ENCODE_BATCH)
    ]
    return torch.cat(parts).long()


def prepare_data(
    plugin: Plugin,
    data: DataConfig,
    codec_dir: Path,
    shards_dir: Path,
    *,
    force: bool = False,
    log: Any = print,
) -> Prepared:
    """Fit (if needed) and save the codec, then encode every split; reuses both when valid."""
    info, name, options = _codec_choice(plugin, data)
    root = Path(data.data_root).expanduser() if data.data_root else None
    if root is not None and not root.is_dir():
        raise ShardError(f"--data-root {root}: no such directory")
    unknown = sorted(set(data.augment) - set(info.augmentations))
    if unknown:
        known = ", ".join(info.augmentations) or "none"
        raise ShardError(
            f"data.augment: {info.name} has no augmentation {unknown[0]!r} (known: {known})"
        )
    meta = {"plugin": plugin.name, "dataset": info.name, "codec": name, "options": options}
    marker = codec_dir / CODEC_MARKER
    if force or not marker.is_file() or _read_or_none(marker) != meta:
        _fit_and_save(plugin.codec(name, options), info, root, codec_dir, meta, log)
    codec, spec = load_codec(plugin, data, codec_dir)

    recipe = {"dataset": info.name, "augment": list(data.augment)}
    recipe_file = shards_dir / PREPARE_RECIPE
    if not force and (shards_dir / "index.json").is_file():
        try:
            check_compatible(read_index(shards_dir), spec)
            if recipe_file.is_file() and _read_or_none(recipe_file) == recipe:
                return Prepared(codec, spec, info, name, shards_dir)
            log(f"shards in {shards_dir} were made with other augmentations; re-encoding")
        except ShardError:
            log(f"shards in {shards_dir} belong to another codec; re-encoding")
    splits: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for split in info.splits:
        items, labels = info.load(split, root)
        if not items:
            continue
        log(f"encoding {info.name}/{split}: {len(items)} items")
        check_encoding(len(items), spec.seq_len, f"codec {name}, data.codec_options")
        if labels is None and isinstance(codec, StreamCodec):
            # A stream codec (BPE over text) cuts one token stream into sequences.
            splits[split] = (codec.encode_stream(items).long(), None)
            continue
        tokens, kept = _encode(codec, items)
        if len(kept) < len(items):
            log(f"skipped {len(items) - len(kept)} unreadable items of {info.name}/{split}")
        label_tensor = None if labels is None else torch.tensor(labels, dtype=torch.long)[kept]
        if split == "train":
            copies = [_augmented(codec, items, kept, info.augmentations[a]) for a in data.augment]
            tokens = torch.cat([tokens, *copies])
            if label_tensor is not None:
                label_tensor = label_tensor.repeat(1 + len(copies))
        splits[split] = (tokens, label_tensor)
    write_shards(shards_dir, splits, spec, name)
    # Written after the shards: without it (a crash in between) the next prepare re-encodes.
    recipe_file.write_text(json.dumps(recipe) + "\n")
    return Prepared(codec, spec, info, name, shards_dir)
