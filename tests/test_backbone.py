"""The backbone hook: lookup by `model.backbone`, the contract check, one-line errors."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from lcmd_core.backbone import BackboneSpec, registered_backbones
from lcmd_core.cli import main
from lcmd_core.codec import TokenSpec
from lcmd_core.masked import MaskedDiffusion
from lcmd_core.model import LCMD
from lcmd_core.plugins import PluginError, get_plugin_manager, hookimpl
from lcmd_core.testing import check_backbone

Register = Callable[..., None]
SPEC = TokenSpec(vocab_size=7, token_shape=(6,), fingerprint="test")


class TokenMLP(nn.Module):
    """A per-token MLP conditioned on λ, the class and self-conditioning (no attention)."""

    def __init__(self, spec: BackboneSpec, ignore_labels: bool = False) -> None:
        super().__init__()
        width, dim = spec.model.width, spec.embed_dim
        self.ignore_labels = ignore_labels
        self.inp = nn.Linear(2 * dim, width)
        self.time = nn.Linear(1, width)
        self.classes = nn.Embedding(spec.num_classes + 1, width)
        self.out = nn.Linear(width, spec.vocab_size)
        self.null = spec.num_classes

    def forward(
        self, z: Tensor, log_snr: Tensor, labels: Tensor | None, self_cond: Tensor | None
    ) -> Tensor:
        cond = torch.zeros_like(z) if self_cond is None else self_cond
        h = self.inp(torch.cat([z, cond], -1)) + self.time(log_snr[:, None, None])
        if labels is None or self.ignore_labels:
            labels = torch.full_like(log_snr, self.null, dtype=torch.long)
        return self.out(torch.tanh(h + self.classes(labels)[:, None]))


class WrongShape(TokenMLP):
    def forward(self, z, log_snr, labels, self_cond):  # type: ignore[override]
        return super().forward(z, log_snr, labels, self_cond)[:, :-1]


class Backbones:
    @hookimpl
    def lcmd_register_backbones(self, register: Register) -> None:
        register("token_mlp", TokenMLP)
        register("deaf", lambda spec: TokenMLP(spec, ignore_labels=True))
        register("wrong_shape", WrongShape)
        register("not_a_module", lambda spec: "a string")


def manager(**plugins: object):
    pm = get_plugin_manager(load_entrypoints=False)
    for name, plugin in plugins.items():
        pm.register(plugin, name=name)
    return pm


def test_builtin_dit_keeps_the_contract() -> None:
    check_backbone("dit", SPEC)


def test_a_plugin_backbone_is_built_trained_and_sampled() -> None:
    pm = manager(nets=Backbones())
    check_backbone("token_mlp", SPEC, plugins=pm)
    model = LCMD(7, 6, plugins=pm, backbone="token_mlp", embed_dim=8, width=16)
    assert isinstance(model.denoiser, TokenMLP) and model.backbone_owner == "nets"
    assert "token_mlp (plugin nets)" in model.describe_network(torch.device("cpu"))


def test_the_check_catches_a_backbone_that_ignores_labels() -> None:
    with pytest.raises(AssertionError, match="ignores labels"):
        check_backbone("deaf", SPEC, plugins=manager(nets=Backbones()))


@pytest.mark.parametrize("process", [LCMD, MaskedDiffusion])
def test_wrong_logits_shape_is_a_one_line_error_naming_the_plugin(process: type) -> None:
    model = process(7, 6, plugins=manager(nets=Backbones()), backbone="wrong_shape", width=16)
    with pytest.raises(PluginError) as err:
        model.loss(torch.randint(0, 7, (2, 6)))
    message = str(err.value)
    assert "\n" not in message
    assert "plugin 'nets'" in message and "'wrong_shape'" in message
    assert re.search(r"shape \[\d+, 5, 7\], expected \[\d+, 6, 7\]", message)


def test_unknown_backbone_lists_the_installed_ones() -> None:
    with pytest.raises(PluginError, match=r"unknown backbone 'graphy'.*dit, token_mlp") as err:
        LCMD(7, 6, plugins=manager(nets=Backbones()), backbone="graphy")
    assert "\n" not in str(err.value)


def test_a_factory_that_returns_no_module_is_named() -> None:
    with pytest.raises(PluginError, match=r"plugin 'nets': backbone 'not_a_module' .* str"):
        LCMD(7, 6, plugins=manager(nets=Backbones()), backbone="not_a_module")


def test_backbone_names_are_unique_across_plugins_and_dit_is_reserved() -> None:
    class Dit:
        @hookimpl
        def lcmd_register_backbones(self, register: Register) -> None:
            register("dit", TokenMLP)

    with pytest.raises(PluginError, match="'dit', which lcmd_core already provides"):
        registered_backbones(manager(mine=Dit()))
    with pytest.raises(PluginError, match=r"plugin 'b' registers backbone 'token_mlp'.*'a'"):
        registered_backbones(manager(a=Backbones(), b=Backbones()))


def test_plugins_command_lists_backbones(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["plugins", "--json"], pm=manager(nets=Backbones())) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [b["name"] for b in listed["nets"]["backbones"]]
    assert names == ["token_mlp", "deaf", "wrong_shape", "not_a_module"]
    assert listed["nets"]["backbones"][0]["description"].startswith("A per-token MLP")


def test_backbone_names_are_validated_by_the_config() -> None:
    from lcmd_core.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match="backbone"):
        validate_config({"model": {"backbone": "no spaces allowed"}})
