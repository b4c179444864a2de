"""Plugin manager and registries: collection per plugin, lookups, entry-point loading."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from lcmd_core.codec import TokenSpec, fingerprint_of
from lcmd_core.plugins import (
    DataNotFoundError,
    DatasetInfo,
    MetricInfo,
    PluginError,
    collect_plugins,
    get_plugin,
    get_plugin_manager,
    hookimpl,
)
from lcmd_core.testing import CodecConformance

Register = Callable[..., None]


class DigitsCodec:
    """Digit strings of length ≤ `length` ↔ tokens (0 = PAD, d + 1 = digit d)."""

    name = "digits"
    needs_fit = False

    def __init__(self, length: int = 4) -> None:
        self.length = length

    @property
    def token_spec(self) -> TokenSpec:
        return TokenSpec(11, (self.length,), fingerprint_of(self.name, self.length))

    def fit(self, items: Sequence[str]) -> None:
        raise AssertionError("digits needs no fit")

    def encode(self, items: Sequence[str]) -> torch.Tensor:
        tokens = torch.zeros(len(items), self.length, dtype=torch.long)
        for row, item in enumerate(items):
            tokens[row, : len(item)] = torch.tensor([int(c) + 1 for c in item], dtype=torch.long)
        return tokens

    def decode(self, tokens: torch.Tensor) -> list[str]:
        return ["".join(str(t - 1) for t in row if t) for row in tokens.tolist()]

    def write(self, items: Sequence[str], directory: Path) -> list[Path]:
        path = Path(directory) / "digits.txt"
        path.write_text("\n".join(items) + "\n")
        return [path]

    def save(self, directory: Path) -> None:
        (Path(directory) / "digits.json").write_text(json.dumps({"length": self.length}))

    def load(self, directory: Path) -> None:
        self.length = json.loads((Path(directory) / "digits.json").read_text())["length"]


def read_digits(data_root: Path | None, split: str) -> tuple[list[str], list[int] | None]:
    items = {"train": ["1", "22", "333"], "test": ["4444"]}[split]
    return items, [len(item) % 2 for item in items]


def exact_rate(
    samples: list[str], references: list[str], codec: object, context: object
) -> dict[str, float]:
    return {"exact": sum(s in references for s in samples) / len(samples)}


class Alpha:
    @hookimpl
    def lcmd_register_codecs(self, register: Register) -> None:
        register("digits", lambda options: DigitsCodec(**options))
        register("broken", lambda options: object())

    @hookimpl
    def lcmd_register_datasets(self, register: Register) -> None:
        for name in ("digits", "more_digits"):
            register(
                DatasetInfo(
                    name=name,
                    description="digit strings",
                    read=read_digits,
                    splits=("train", "test"),
                    default_codec="digits",
                    num_classes=2,
                )
            )

    @hookimpl
    def lcmd_register_presets(self, register: Register) -> None:
        register("tiny", {"train": {"max_steps": 5}}, "five steps")
        register("long", {"train": {"max_steps": 5000}})

    @hookimpl
    def lcmd_register_metrics(self, register: Register) -> None:
        register(MetricInfo(name="exact", description="exact matches", compute=exact_rate))


class Beta:
    @hookimpl
    def lcmd_register_presets(self, register: Register) -> None:
        register("tiny", {"train": {"max_steps": 7}, "model": {"width": 32}})


def manager(**plugins: object):
    pm = get_plugin_manager(load_entrypoints=False)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


def test_collect_assigns_registrations_to_their_plugin() -> None:
    plugins = collect_plugins(manager(alpha=Alpha(), beta=Beta()))
    assert list(plugins) == ["alpha", "beta"]
    alpha, beta = plugins["alpha"], plugins["beta"]
    assert list(alpha.codecs) == ["digits", "broken"]
    assert list(alpha.datasets) == ["digits", "more_digits"]
    assert alpha.default_dataset == "digits"
    assert list(alpha.metrics) == ["exact"]
    assert alpha.presets["tiny"] == ({"train": {"max_steps": 5}}, "five steps")
    assert (beta.codecs, beta.datasets, beta.metrics) == ({}, {}, {})
    assert beta.default_dataset is None


def test_each_plugin_has_its_own_tiny_preset() -> None:
    pm = manager(alpha=Alpha(), beta=Beta())
    assert get_plugin("alpha", pm).preset("tiny") == {"train": {"max_steps": 5}}
    assert get_plugin("beta", pm).preset("tiny") == {
        "train": {"max_steps": 7},
        "model": {"width": 32},
    }


def test_preset_returns_a_copy() -> None:
    alpha = get_plugin("alpha", manager(alpha=Alpha()))
    alpha.preset("tiny")["train"]["max_steps"] = 1
    assert alpha.preset("tiny") == {"train": {"max_steps": 5}}


def test_lookup_helpers_return_registered_things() -> None:
    alpha = get_plugin("alpha", manager(alpha=Alpha()))
    codec = alpha.codec("digits", {"length": 6})
    assert isinstance(codec, DigitsCodec) and codec.token_spec.token_shape == (6,)
    assert alpha.dataset().name == "digits"
    assert alpha.dataset("more_digits").name == "more_digits"


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda p: p.codec("bpe"), "plugin 'alpha' has no codec 'bpe' (known: digits, broken)"),
        (lambda p: p.dataset("text8"), "has no dataset 'text8' (known: digits, more_digits)"),
        (lambda p: p.preset("huge"), "has no preset 'huge' (known: tiny, long)"),
        (lambda p: p.codec("broken"), "returned object, which lacks name, token_spec, needs_fit"),
    ],
)
def test_unknown_names_are_one_line_errors(lookup: Callable, message: str) -> None:
    alpha = get_plugin("alpha", manager(alpha=Alpha()))
    with pytest.raises(PluginError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        lookup(alpha)
    assert "\n" not in str(err.value)


def test_unknown_plugin_lists_installed_ones() -> None:
    with pytest.raises(PluginError, match=r"unknown plugin 'gamma' \(installed: alpha, beta\)"):
        get_plugin("gamma", manager(alpha=Alpha(), beta=Beta()))


def test_plugin_without_datasets_has_no_default() -> None:
    with pytest.raises(PluginError, match="plugin 'beta' registers no datasets"):
        get_plugin("beta", manager(beta=Beta())).dataset()


def test_duplicate_names_within_a_plugin_are_errors() -> None:
    class Twice:
        @hookimpl
        def lcmd_register_presets(self, register: Register) -> None:
            register("tiny", {})
            register("tiny", {})

    with pytest.raises(PluginError, match="plugin 'twice' registers preset 'tiny' twice"):
        collect_plugins(manager(twice=Twice()))


def test_invalid_preset_is_reported_with_its_plugin() -> None:
    class Typo:
        @hookimpl
        def lcmd_register_presets(self, register: Register) -> None:
            register("tiny", {"train": {"max_stepz": 5}})

    with pytest.raises(PluginError, match=r"plugin 'typo': preset 'tiny': train\.max_stepz"):
        collect_plugins(manager(typo=Typo()))


def test_check_pending_catches_a_misspelled_hook() -> None:
    class Misspelled:
        @hookimpl
        def lcmd_register_codec(self, register: Register) -> None:
            register("x", DigitsCodec)

    pm = manager(misspelled=Misspelled())
    with pytest.raises(
        PluginError, match="plugin 'misspelled' implements unknown hook lcmd_register_codec "
    ):
        collect_plugins(pm)


def test_dataset_load_checks_split_root_and_labels() -> None:
    info = DatasetInfo(
        name="lsun",
        description="",
        read=read_digits,
        splits=("train", "test"),
        default_codec="digits",
        needs_root=True,
        source="https://example.org/lsun",
    )
    with pytest.raises(
        PluginError, match=r"dataset 'lsun' has no split 'valid' \(splits: train, test\)"
    ):
        info.load("valid", Path("/data"))
    with pytest.raises(DataNotFoundError, match=r"needs --data-root .*https://example\.org/lsun"):
        info.load("train")
    assert info.load("test", Path("/data")) == (["4444"], [0])
    labelled = DatasetInfo(
        name="d", description="", read=read_digits, default_codec="digits", num_classes=1
    )
    with pytest.raises(PluginError, match=r"labels outside \[0, 1\)"):
        labelled.load("train")


def test_dataset_class_names_must_match_num_classes() -> None:
    with pytest.raises(PluginError, match="2 class_names but num_classes=3"):
        DatasetInfo(
            name="d",
            description="",
            read=read_digits,
            default_codec="digits",
            num_classes=3,
            class_names=("a", "b"),
        )


def test_load_plugins_env_restricts_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCMD_LOAD_PLUGINS", "")
    assert collect_plugins(get_plugin_manager()) == {}
    monkeypatch.setenv("LCMD_LOAD_PLUGINS", "no_such_plugin")
    with pytest.raises(
        PluginError, match="LCMD_LOAD_PLUGINS names 'no_such_plugin', which no installed"
    ):
        get_plugin_manager()


def _installed_entry_points() -> set[str]:
    return {ep.name for ep in importlib.metadata.entry_points(group="lcmd")}


@pytest.mark.skipif(
    "example" not in _installed_entry_points(),
    reason="lcmd-example-plugin is not installed (pip install -e examples/lcmd-example-plugin)",
)
def test_example_plugin_is_found_through_its_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCMD_LOAD_PLUGINS", "example")
    pm = get_plugin_manager()
    assert pm.list_name_plugin()[0][0] == "example"
    example = get_plugin("example", pm)
    assert example.default_dataset == "unicode_names"
    assert "tiny" in example.presets and "chars" in example.codecs
    assert "name_validity" in example.metrics
    monkeypatch.delenv("LCMD_LOAD_PLUGINS")
    assert "example" in collect_plugins(get_plugin_manager())


class TestDigitsCodecConformance(CodecConformance):
    def new_codec(self) -> DigitsCodec:
        return get_plugin("alpha", manager(alpha=Alpha())).codec("digits")

    def sample_items(self) -> list[str]:
        return ["0", "12", "345", "6789", ""]


class ShuffledDigits(DigitsCodec):
    """Breaks batch-size invariance: a batch's rows come out in reverse order."""

    def encode(self, items: Sequence[str]) -> torch.Tensor:
        return super().encode(items).flip(0)


def test_conformance_suite_catches_a_batch_dependent_codec() -> None:
    suite = TestDigitsCodecConformance()
    items = suite.sample_items()
    with pytest.raises(AssertionError):
        suite.test_encoding_is_batch_size_invariant(ShuffledDigits(), items)
    with pytest.raises(AssertionError):
        suite.test_round_trip(ShuffledDigits(), items)


def test_plugin_api_version_is_checked_at_load():
    import types

    from lcmd_core import PLUGIN_API

    def plugin_with(api):
        module = types.SimpleNamespace(LCMD_PLUGIN_API=api)
        return collect_plugins(manager(future=module))

    assert "future" in plugin_with(PLUGIN_API)
    with pytest.raises(PluginError) as err:
        plugin_with(PLUGIN_API + 1)
    assert str(err.value) == (
        f"plugin 'future' is written for lcmd plugin API {PLUGIN_API + 1}; this lcmd implements "
        f"{PLUGIN_API}; upgrade lcmd-core (or uninstall the plugin)"
    )
    with pytest.raises(PluginError, match="upgrade the plugin"):
        plugin_with(0)
    with pytest.raises(PluginError, match="LCMD_PLUGIN_API must be an integer, got '1'"):
        plugin_with("1")
    assert all(
        module.LCMD_PLUGIN_API == PLUGIN_API
        for name, module in get_plugin_manager().list_name_plugin()
    )  # every plugin of this repository says which API it is written for
