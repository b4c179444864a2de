"""The FID Inception network: reference state_dict layout, safe strict loading, features."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from lcmd_image_vq.inception import (
    WEIGHTS_NAME,
    FIDInceptionV3,
    inception_features,
    load_fid_inception,
)

from lcmd_core.plugins import DataNotFoundError, PluginError

# pytorch-fid's fid_inception_v3(): torchvision's Inception3(num_classes=1008, aux_logits=False)
# has 27,161,264 parameters with its aux head (3,326,696) and 1000 classes; minus the aux head,
# plus 8 more fc rows (8 × 2048 + 8), that is 23,850,960.
REFERENCE_PARAMETERS = 23_850_960
REFERENCE_STATE_NUMEL = 23_885_392  # parameters + BN running means/variances (17,216 channels)
BLOCKS = [
    "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "fc",
]  # fmt: skip


class Exploit:
    """A pickle that runs a shell command when unpickled without `weights_only`."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"echo pwned > {self.target}",)


@pytest.fixture(scope="module")
def model() -> FIDInceptionV3:
    """A randomly initialised network with non-trivial BN statistics."""
    torch.manual_seed(0)
    net = FIDInceptionV3()
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def weights(model: FIDInceptionV3, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / WEIGHTS_NAME
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (16, 16, 1), dtype=np.uint8) for _ in range(2)]


def test_state_dict_has_the_reference_layout() -> None:
    net = FIDInceptionV3()
    state = net.state_dict()
    assert [name for name, _ in net.named_children()] == BLOCKS
    assert sum(p.numel() for p in net.parameters()) == REFERENCE_PARAMETERS
    stats = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert sum(v.numel() for v in stats.values()) == REFERENCE_STATE_NUMEL
    assert len(state) - len(stats) == 94  # BN layers
    assert not any(k.startswith("AuxLogits") for k in state)
    shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_var": (32,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_2.conv.weight": (192, 192, 7, 1),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.bn.bias": (192,),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    assert {k: tuple(state[k].shape) for k in shapes} == shapes


def test_strict_round_trip_gives_identical_features(
    model: FIDInceptionV3, weights: Path, images: list[np.ndarray]
) -> None:
    loaded = load_fid_inception(weights)
    assert loaded.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert not loaded.training
    x = torch.from_numpy(images[0]).permute(2, 0, 1).repeat(3, 1, 1)[None]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_loads_a_checkpoint_without_num_batches_tracked(
    model: FIDInceptionV3, tmp_path: Path
) -> None:
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / WEIGHTS_NAME)
    loaded = load_fid_inception(tmp_path / WEIGHTS_NAME)
    assert torch.equal(loaded.fc.weight, model.fc.weight)


def test_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    torch.save({"fc.weight": Exploit(target)}, tmp_path / "evil.pth")
    with pytest.raises(PluginError) as err:
        load_fid_inception(tmp_path / "evil.pth")
    assert "\n" not in str(err.value) and "evil.pth" in str(err.value)
    assert not target.exists()


def test_missing_file_names_the_expected_weights(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        load_fid_inception(tmp_path / "nope.pth")
    assert WEIGHTS_NAME in str(err.value) and "pytorch-fid" in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_state_dicts_name_the_first_bad_key(model: FIDInceptionV3, tmp_path: Path) -> None:
    state = model.state_dict()
    path = tmp_path / "w.pth"
    renamed = {("fc.kernel" if k == "fc.weight" else k): v for k, v in state.items()}
    torch.save(renamed, path)
    with pytest.raises(PluginError, match=r"missing key 'fc\.weight'"):
        load_fid_inception(path)
    torch.save({**state, "AuxLogits.fc.weight": torch.zeros(1008, 768)}, path)
    with pytest.raises(PluginError, match=r"unexpected key 'AuxLogits\.fc\.weight'"):
        load_fid_inception(path)
    torch.save({**state, "fc.weight": torch.zeros(1000, 2048)}, path)
    with pytest.raises(PluginError, match=r"'fc\.weight' has shape \(1000, 2048\)"):
        load_fid_inception(path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(PluginError, match="not a plain state_dict"):
        load_fid_inception(path)


def test_inception_features(model: FIDInceptionV3, images: list[np.ndarray]) -> None:
    feats, probs = inception_features(model, images, batch_size=1)
    assert feats.shape == (2, 2048) and probs.shape == (2, 1008)
    assert feats.dtype == probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(probs >= 0) and np.ptp(feats, axis=0).max() > 0
    rgb = [np.repeat(im, 3, axis=2) for im in images]
    feats_rgb, probs_rgb = inception_features(model, rgb, batch_size=2)
    np.testing.assert_allclose(feats_rgb, feats, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs_rgb, probs, rtol=1e-5, atol=1e-9)
    again, _ = inception_features(model, images[:1])
    np.testing.assert_array_equal(again, feats[:1])
    empty, empty_probs = inception_features(model, [])
    assert empty.shape == (0, 2048) and empty_probs.shape == (0, 1008)
    with pytest.raises(PluginError, match="uint8"):
        inception_features(model, [images[0].astype(np.float32)])
