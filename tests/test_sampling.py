"""Sampling settings resolved once; the optional codec capabilities as protocols."""

import pytest
import torch

from lcmd_core import LCMD, MaskedDiffusion
from lcmd_core.codec import PromptCodec, StreamCodec
from lcmd_core.config import SampleConfig
from lcmd_core.run_dir import RunError
from lcmd_core.sampling import SampleSettings


def tiny(cls=LCMD, classes=0):
    torch.manual_seed(0)
    return cls(7, 6, num_classes=classes, width=16, depth=1, heads=2, embed_dim=4)


def test_unconditional_run_records_the_guidance_it_used():
    asked = SampleSettings.resolve(SampleConfig(guidance=3.0), tiny(), guidance=2.0)
    assert asked.guidance == 1.0
    conditional = SampleSettings.resolve(SampleConfig(guidance=3.0), tiny(classes=2))
    assert conditional.guidance == 3.0
    override = SampleSettings.resolve(SampleConfig(), tiny(classes=2), guidance=0.0)
    assert override.guidance == 0.0  # 0 is a value, not "unset"


def test_defaults_come_from_the_config_and_the_process():
    config = SampleConfig(num_samples=5, steps=7, use_ema=False)
    settings = SampleSettings.resolve(config, tiny())
    assert (settings.n, settings.steps, settings.ema, settings.temperature) == (5, 7, False, 0.0)
    masked = SampleSettings.resolve(SampleConfig(), tiny(MaskedDiffusion))
    assert masked.temperature == 1.0 and masked.sampler == "ancestral"
    assert SampleSettings.resolve(config, tiny(), use_ema=True, n=2).to_json() == {
        "n": 2,
        "steps": 7,
        "sampler": "ancestral",
        "guidance": 1.0,
        "temperature": 0.0,
        "x0_temperature": 0.5,
        "readout_gate": 1.0,
        "seed": 0,
        "ema": True,
    }
    sharp = SampleSettings.resolve(SampleConfig(x0_temperature=0.3), tiny(), x0_temperature=0.0)
    assert sharp.x0_temperature == 0.0  # 0 is a value, not "unset"
    assert SampleSettings.resolve(SampleConfig(x0_temperature=0.3), tiny()).x0_temperature == 0.3
    assert masked.x0_temperature is None


def test_masked_run_refuses_an_x0_temperature_in_one_line():
    with pytest.raises(RunError, match=r"x0_temperature 0\.5 is for diffusion\.process=continuous"):
        SampleSettings.resolve(SampleConfig(), tiny(MaskedDiffusion), x0_temperature=0.5)
    with pytest.raises(ValueError, match="masked diffusion draws tokens"):
        tiny(MaskedDiffusion).sample(2, steps=2, x0_temperature=0.5)


def test_the_readout_gate_resolves_from_the_call_the_config_and_the_process():
    assert SampleSettings.resolve(SampleConfig(), tiny()).readout_gate == 1.0  # LCMD's default
    off = SampleSettings.resolve(SampleConfig(readout_gate="off"), tiny())
    assert off.readout_gate == "off"
    call = SampleSettings.resolve(SampleConfig(readout_gate="off"), tiny(), readout_gate=-2.0)
    assert call.readout_gate == -2.0
    assert SampleSettings.resolve(SampleConfig(), tiny(MaskedDiffusion)).readout_gate is None
    with pytest.raises(RunError, match=r"readout_gate 1\.0 is for diffusion\.process=continuous"):
        SampleSettings.resolve(SampleConfig(), tiny(MaskedDiffusion), readout_gate=1.0)
    with pytest.raises(RunError, match="finite number or 'off'"):
        SampleSettings.resolve(SampleConfig(), tiny(), readout_gate=float("inf"))
    with pytest.raises(ValueError, match="masked diffusion has none"):
        tiny(MaskedDiffusion).sample(2, steps=2, readout_gate="off")


def test_masked_run_refuses_ddim_in_one_line():
    with pytest.raises(RunError, match="ancestral unmasking"):
        SampleSettings.resolve(SampleConfig(), tiny(MaskedDiffusion), sampler="ddim")


def test_codec_capabilities_are_declared_protocols():
    text = pytest.importorskip("lcmd_text.plugin")
    example = pytest.importorskip("lcmd_example.plugin")
    char, bpe = text.char_codec({}), text.bpe_codec({})
    assert isinstance(char, PromptCodec) and not isinstance(char, StreamCodec)
    assert isinstance(bpe, PromptCodec) and isinstance(bpe, StreamCodec)
    chars = example.chars_codec({})
    assert not isinstance(chars, PromptCodec) and not isinstance(chars, StreamCodec)
