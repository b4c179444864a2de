"""Plugin manager and registries: what each installed `lcmd` plugin registers, kept per plugin.

Import-light on purpose (no torch): entry-point modules import `hookimpl` and the info classes
from here, and `lcmd plugins` only lists names.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from lcmd_core import hookspecs

if TYPE_CHECKING:
    from lcmd_core.codec import Codec

hookimpl = pluggy.HookimplMarker("lcmd")

ENTRY_POINT_GROUP = "lcmd"
LOAD_PLUGINS_ENV = "LCMD_LOAD_PLUGINS"
# The plugin API this lcmd implements: the hooks, the info classes and the Codec protocol. A
# plugin module says which it was written for with `LCMD_PLUGIN_API = N` (none: 1).
PLUGIN_API = 1
SUPPORTED_PLUGIN_APIS = range(1, PLUGIN_API + 1)

CodecFactory = Callable[[dict[str, Any]], "Codec"]
BackboneFactory = Callable[..., Any]  # (BackboneSpec) -> torch.nn.Module, see lcmd_core.backbone
_HOOKS = (
    "lcmd_register_codecs",
    "lcmd_register_datasets",
    "lcmd_register_presets",
    "lcmd_register_metrics",
    "lcmd_register_backbones",
)
_CODEC_MEMBERS = (
    "name",
    "token_spec",
    "needs_fit",
    "fit",
    "encode",
    "decode",
    "write",
    "save",
    "load",
)


class PluginError(ValueError):
    """A plugin, or a name looked up in one, is missing or broken; the message is for the user."""


class DataNotFoundError(PluginError):
    """A data set's files are missing; the message names the expected files and their source."""


class CorruptItemError(PluginError):
    """One item of a data set cannot be read (e.g. an undecodable image); prepare skips it."""


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """A raw data set: `read(data_root, split) -> (items, labels or None)` and how to encode it."""

    name: str
    description: str
    read: Callable[[Path | None, str], tuple[list[Any], list[int] | None]]
    default_codec: str
    splits: tuple[str, ...] = ("train", "valid", "test")
    codec_options: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    needs_root: bool = False
    source: str = ""
    augmentations: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.splits:
            raise PluginError(f"dataset {self.name!r}: splits must name at least one split")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise PluginError(
                f"dataset {self.name!r}: {len(self.class_names)} class_names "
                f"but num_classes={self.num_classes}"
            )

    def load(self, split: str, data_root: Path | None = None) -> tuple[list[Any], list[int] | None]:
        """Read one split, checking the split name, the data root and the labels."""
        if split not in self.splits:
            raise PluginError(
                f"dataset {self.name!r} has no split {split!r} (splits: {', '.join(self.splits)})"
            )
        if self.needs_root and data_root is None:
            where = f"; its files come from {self.source}" if self.source else ""
            raise DataNotFoundError(
                f"dataset {self.name!r} needs --data-root (or LCMD_DATA_ROOT){where}"
            )
        items, labels = self.read(data_root, split)
        if labels is not None:
            if len(labels) != len(items):
                raise PluginError(
                    f"dataset {self.name!r}: split {split!r} read {len(items)} items "
                    f"but {len(labels)} labels"
                )
            if self.num_classes and any(not 0 <= y < self.num_classes for y in labels):
                raise PluginError(
                    f"dataset {self.name!r}: split {split!r} has labels outside "
                    f"[0, {self.num_classes})"
                )
        return items, labels


@dataclass(frozen=True, kw_only=True)
class MetricContext:
    """What an evaluation (`Run.evaluate`, `lcmd eval`) gives a metric besides the samples."""

    dataset: DatasetInfo
    split: str  # the evaluated split, whose decoded tokens are the `references`
    sample_labels: list[int] | None  # the class each sample was generated for
    load: Callable[[str], tuple[list[Any], list[int] | None]]  # raw items and labels of a split
    cache_dir: Path  # in the run directory, for what a metric computes once (a classifier)
    elbo_bits_per_token: float | None = None  # the model's ELBO on the split, when measured
    # Filled by the metric: how it measured (feature network, weights checksum, preprocessing);
    # the evaluation writes it to metrics.json under protocol.metrics[<metric name>].
    protocol: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MetricInfo:
    """A sample-quality metric: `compute(samples, references, codec, context) -> {key: value}`.

    `samples` are decoded generated items, `references` the decoded items of the evaluated split,
    `context` a `MetricContext` (labels, raw data, a cache directory) for metrics that need more.
    """

    name: str
    description: str
    compute: Callable[[list[Any], list[Any], Codec, MetricContext], dict[str, float]]
    # metric key → True where higher is better: `lcmd eval` marks each value ↑ or ↓ by it and
    # `lcmd plugins --json` lists it; keys left out get no mark
    higher_is_better: dict[str, bool] | None = None


def _unknown(kind: str, name: str, plugin: str, known: Sequence[str]) -> PluginError:
    names = ", ".join(known) if known else "none registered"
    return PluginError(f"plugin {plugin!r} has no {kind} {name!r} (known: {names})")


@dataclass
class Plugin:
    """Everything one plugin registered, by name; `default_dataset` is its first data set."""

    name: str
    codecs: dict[str, CodecFactory] = field(default_factory=dict)
    datasets: dict[str, DatasetInfo] = field(default_factory=dict)
    presets: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    backbones: dict[str, BackboneFactory] = field(default_factory=dict)
    default_dataset: str | None = None

    def codec(self, name: str, options: dict[str, Any] | None = None) -> Codec:
        """A new (unfitted) codec from the factory registered as `name`."""
        if name not in self.codecs:
            raise _unknown("codec", name, self.name, list(self.codecs))
        factory = self.codecs[name]
        codec = factory(dict(options or {}))
        missing = [m for m in _CODEC_MEMBERS if not _has_static(codec, m)]
        if missing:
            raise PluginError(
                f"plugin {self.name!r}: codec factory {name!r} returned {type(codec).__name__}, "
                f"which lacks {', '.join(missing)} of the Codec protocol"
            )
        return codec

    def dataset(self, name: str | None = None) -> DatasetInfo:
        """The data set registered as `name`, or the plugin's default data set when None."""
        if name is None:
            if self.default_dataset is None:
                raise PluginError(f"plugin {self.name!r} registers no datasets")
            name = self.default_dataset
        if name not in self.datasets:
            raise _unknown("dataset", name, self.name, list(self.datasets))
        return self.datasets[name]

    def preset(self, name: str) -> dict[str, Any]:
        """A copy of the nested config dict registered as preset `name`."""
        if name not in self.presets:
            raise _unknown("preset", name, self.name, list(self.presets))
        return copy.deepcopy(self.presets[name][0])


def _has_static(obj: object, name: str) -> bool:
    # getattr_static: reading `token_spec` on an unfitted codec may legitimately raise.
    try:
        inspect.getattr_static(obj, name)
    except AttributeError:
        return False
    return True


def _plugin_label(pm: pluggy.PluginManager, plugin: object) -> str:
    return pm.get_name(plugin) or getattr(plugin, "__name__", None) or repr(plugin)


def _check_pending(pm: pluggy.PluginManager) -> None:
    """`pm.check_pending()`, reporting a misspelled hook as one PluginError line."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        hooks = [h.name for h in pm.get_hookcallers(err.plugin) or [] if not h.has_spec()]
        raise PluginError(
            f"plugin {_plugin_label(pm, err.plugin)!r} implements unknown hook "
            f"{', '.join(hooks)} (lcmd hooks: {', '.join(_HOOKS)})"
        ) from None


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Register the `lcmd` entry points, only those named in `LCMD_LOAD_PLUGINS` when it is set."""
    selected = os.environ.get(LOAD_PLUGINS_ENV)
    if selected is None:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    names = dict.fromkeys(n.strip() for n in selected.split(",") if n.strip())
    missing = [n for n in names if pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, n) == 0]
    if missing:
        raise PluginError(
            f"{LOAD_PLUGINS_ENV} names {', '.join(map(repr, missing))}, which no installed "
            f"package provides; fix or unset {LOAD_PLUGINS_ENV}"
        )


def get_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the lcmd hookspecs and the installed `lcmd` entry points.

    `LCMD_LOAD_PLUGINS` (comma-separated entry-point names, empty for none) restricts which
    entry points are loaded.
    """
    pm = pluggy.PluginManager("lcmd")
    pm.add_hookspecs(hookspecs)
    if load_entrypoints:
        try:
            _load_entry_points(pm)
        except pluggy.PluginValidationError as err:
            message = str(err).strip().splitlines()[-1]
            raise PluginError(f"plugin {_plugin_label(pm, err.plugin)!r}: {message}") from None
    _check_pending(pm)
    return pm


def _registrar(plugin: Plugin, hook: str) -> Callable[..., None]:
    """The `register` callback handed to one plugin's implementation of `hook`."""

    def check_new(kind: str, name: object, table: dict[str, Any]) -> str:
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin.name!r}: {kind} names must be non-empty strings")
        if name in table:
            raise PluginError(f"plugin {plugin.name!r} registers {kind} {name!r} twice")
        return name

    def register_codec(name: str, factory: CodecFactory) -> None:
        if not callable(factory):
            raise PluginError(f"plugin {plugin.name!r}: codec {name!r} factory is not callable")
        plugin.codecs[check_new("codec", name, plugin.codecs)] = factory

    def register_dataset(info: DatasetInfo) -> None:
        if not isinstance(info, DatasetInfo):
            raise PluginError(f"plugin {plugin.name!r}: register a DatasetInfo, got {info!r}")
        plugin.datasets[check_new("dataset", info.name, plugin.datasets)] = info
        if plugin.default_dataset is None:
            plugin.default_dataset = info.name

    def register_preset(name: str, preset: dict[str, Any], description: str = "") -> None:
        name = check_new("preset", name, plugin.presets)
        if not isinstance(preset, dict):
            raise PluginError(f"plugin {plugin.name!r}: preset {name!r} must be a nested dict")
        from lcmd_core.config import ConfigError, validate_config  # pydantic: only when used

        try:
            validate_config(preset)
        except ConfigError as err:
            raise PluginError(f"plugin {plugin.name!r}: preset {name!r}: {err}") from None
        plugin.presets[name] = (copy.deepcopy(preset), description)

    def register_metric(info: MetricInfo) -> None:
        if not isinstance(info, MetricInfo):
            raise PluginError(f"plugin {plugin.name!r}: register a MetricInfo, got {info!r}")
        plugin.metrics[check_new("metric", info.name, plugin.metrics)] = info

    def register_backbone(name: str, factory: BackboneFactory) -> None:
        if not callable(factory):
            raise PluginError(f"plugin {plugin.name!r}: backbone {name!r} factory is not callable")
        plugin.backbones[check_new("backbone", name, plugin.backbones)] = factory

    return {
        "lcmd_register_codecs": register_codec,
        "lcmd_register_datasets": register_dataset,
        "lcmd_register_presets": register_preset,
        "lcmd_register_metrics": register_metric,
        "lcmd_register_backbones": register_backbone,
    }[hook]


def collect_plugins(pm: pluggy.PluginManager) -> dict[str, Plugin]:
    """What each registered plugin provides, by plugin name, in registration order."""
    _check_pending(pm)
    plugins = {}
    for name, obj in pm.list_name_plugin():
        if obj is not None:
            _check_api(name, getattr(obj, "LCMD_PLUGIN_API", 1))
            plugins[name] = Plugin(name)
    for hook in _HOOKS:
        # One implementation at a time, so each registration is owned by the plugin that made it.
        for impl in getattr(pm.hook, hook).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: {hook} cannot be a wrapper; drop wrapper=True"
                )
            args = {"register": _registrar(plugins[impl.plugin_name], hook)}
            impl.function(*(args[a] for a in impl.argnames))
    return plugins


def _check_api(name: str, api: object) -> None:
    """Refuse a plugin written for a plugin API this lcmd does not implement."""
    if type(api) is not int:
        raise PluginError(f"plugin {name!r}: LCMD_PLUGIN_API must be an integer, got {api!r}")
    if api not in SUPPORTED_PLUGIN_APIS:
        fix = "upgrade lcmd-core" if api > PLUGIN_API else "upgrade the plugin"
        raise PluginError(
            f"plugin {name!r} is written for lcmd plugin API {api}; this lcmd implements "
            f"{PLUGIN_API}; {fix} (or uninstall the plugin)"
        )


def get_plugin(name: str, pm: pluggy.PluginManager | None = None) -> Plugin:
    """The installed plugin called `name` (its entry-point name)."""
    plugins = collect_plugins(pm if pm is not None else get_plugin_manager())
    if name not in plugins:
        if plugins:
            known = f"installed: {', '.join(plugins)}"
        else:
            known = "no lcmd plugins are installed; pip install one, e.g. lcmd-text"
        if os.environ.get(LOAD_PLUGINS_ENV) is not None:
            known += f"; {LOAD_PLUGINS_ENV} restricts which are loaded"
        raise PluginError(f"unknown plugin {name!r} ({known})")
    return plugins[name]
