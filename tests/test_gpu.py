"""The CUDA fast path: xformers vs SDPA parity, bf16 autocast training, seeded sampling.

Marked `gpu`: skipped on CPU-only machines (and excluded from the default run); run with
`pytest -m gpu tests/test_gpu.py` on a machine with CUDA.
"""

import pytest
import torch

from lcmd_core import LCMD
from lcmd_core.attention import attention, resolve_backend, xformers_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.skipif(
    not (torch.cuda.is_available() and xformers_available()), reason="xformers not installed"
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_xformers_matches_sdpa(dtype):
    torch.manual_seed(0)
    q, k, v = (torch.randn(4, 8, 256, 64, device="cuda", dtype=dtype) for _ in range(3))
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-3
    ref = attention(q.float(), k.float(), v.float(), "math")
    for backend in ("sdpa", "xformers"):
        out = attention(q, k, v, backend).float()
        assert (out - ref).abs().max() < tol, backend
    assert resolve_backend("auto", "cuda") == "xformers"


def test_bf16_training_step_is_finite_and_learns():
    torch.manual_seed(0)
    model = LCMD(1024, 256, num_classes=10, size="S", embed_dim=64).cuda()
    opt = torch.optim.AdamW(model.param_groups(3e-4, 3e-3, 0.01), fused=True)
    data = torch.randint(0, 1024, (4, 256), device="cuda")
    labels = torch.arange(4, device="cuda")
    first = None
    for _ in range(30):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model.loss(data.repeat(4, 1), labels.repeat(4))
        assert out["total"].dtype == torch.float32  # losses stay in float32 under autocast
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        first = first if first is not None else float(out["total"])
        assert torch.isfinite(out["total"])
    assert float(out["total"]) < first


def test_cuda_sampling_is_seeded_and_matches_shapes():
    torch.manual_seed(0)
    model = LCMD(64, 32, num_classes=3, width=64, depth=2, heads=2, embed_dim=16).cuda()
    labels = torch.tensor([0, 1, 2, 0], device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        a = model.sample(4, steps=8, labels=labels, guidance=2.0, seed=5)
        b = model.sample(4, steps=8, labels=labels, guidance=2.0, seed=5)
    assert a.device.type == "cuda" and a.shape == (4, 32)
    assert torch.equal(a, b)


def test_trainer_runs_bf16_on_cuda(tmp_path):
    plugin = pytest.importorskip("lcmd_example.plugin")
    from lcmd_core import Trainer
    from lcmd_core.config import resolve_config
    from lcmd_core.plugins import get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(plugin, name="example")
    cfg = resolve_config(
        overrides=[
            "model.width=64",
            "model.depth=2",
            "model.heads=2",
            "train.max_steps=20",
            "train.global_batch_size=32",
            "sample.steps=5",
            "sample.num_samples=8",
        ]
    )
    trainer = Trainer(cfg, plugin="example", run_dir=tmp_path / "run", progress=False, pm=pm)
    assert trainer.device.type == "cuda" and trainer.autocast_dtype == torch.bfloat16
    record = trainer.fit()
    assert record["step"] == 20 and all(
        torch.isfinite(torch.tensor(v)) for k, v in record.items() if isinstance(v, float)
    )
    assert trainer.evaluate("valid", max_sequences=128)["elbo_bits_per_token"] > 0
