"""The ablation script's report: mean ± half-range over seeds, one row per variant."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "examples" / "ablations.py"


def load_script():
    spec = importlib.util.spec_from_file_location("ablations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(variant: str, seed: int, fid: float, dist: float) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "metrics": {"elbo_bits_per_token": 5.0 + seed, "classifier/fid": fid},
        "diagnostics": [
            {"step": 1, "embed/mean_pairwise_dist": 1.4, "acc_t0": 0.5},
            {"step": 2, "embed/mean_pairwise_dist": dist, "acc_t0": 0.9},
        ],
    }


def test_table_averages_seeds_and_reports_half_range(tmp_path: Path) -> None:
    ablations = load_script()
    results = [
        record("full", 0, 70.0, 1.8),
        record("full", 1, 80.0, 2.0),
        record("no_cm", 0, 140.0, 1.2),
    ]
    results[2]["train_steps"] = 2917
    lines = ablations.table(results).splitlines()
    head = "| variant | seeds | train steps | elbo_bits_per_token | fid | mean_pairwise_dist"
    assert lines[0].startswith(head)
    assert lines[2].startswith("| full | 2 | – | 5.5 ± 0.5 | 75 ± 5 | 1.9 ± 0.1 |")
    assert lines[3].startswith("| no_cm | 1 | 2917 | 5 | 140 | 1.2 |")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--report", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0 and "| no_cm | 1 |" in done.stdout


def test_distinguishable_log_snr_follows_the_table_and_the_shift() -> None:
    """d′ = e^{λ/2} d_nn = 2: d_nn = 1 gives λ = 2 log 2; rows twice as far apart need 2 log 4
    less; a positive shift puts more training time at lower noise than that."""
    import math

    from lcmd_core.schedule import ShiftedCosineSchedule

    ablations = load_script()
    rec = record("full", 0, 70.0, 1.8)
    assert ablations.distinguishable(rec) == (None, None)  # no shift or distance recorded
    rec["shift"], rec["diagnostics"][-1]["embed/mean_nn_dist"] = 0.0, 1.0
    lam, share = ablations.distinguishable(rec)
    assert math.isclose(lam, 2 * math.log(2))
    assert math.isclose(share, float(ShiftedCosineSchedule(0.0).t_from_log_snr(lam)))
    rec["diagnostics"][-1]["embed/mean_nn_dist"] = 2.0
    assert math.isclose(ablations.distinguishable(rec)[0], 0.0, abs_tol=1e-12)
    rec["shift"] = 2.0
    assert ablations.distinguishable(rec)[1] > share
    line = ablations.table([rec]).splitlines()[2]
    assert line.endswith(f"| {0.0:.3g} | {ablations.distinguishable(rec)[1]:.3g} |")


def test_every_variant_override_is_a_valid_config_key() -> None:
    from lcmd_core.config import resolve_config

    for overrides in load_script().VARIANTS.values():
        resolve_config(overrides=overrides)


def test_network_passes_count_every_pass_of_a_step() -> None:
    """LCMD: 3 × (1 + rec) with gradients, the CM target, and the self-conditioning draft on
    every row; masked: 3, plus its draft. Equal FLOPs give masked 1.46× the steps (no self-cond)."""
    from lcmd_core.config import resolve_config

    passes = load_script().network_passes
    plain = resolve_config().model_dump()
    assert passes(plain) == pytest.approx(3 * 1.125 + 1)
    sc = resolve_config(overrides=["model.self_condition=true"]).model_dump()
    assert passes(sc) == pytest.approx(4 * 1.125 + 1)
    no_cm = resolve_config(overrides=["diffusion.cm_weight=0"]).model_dump()
    assert passes(no_cm) == pytest.approx(3 * 1.125)
    masked = resolve_config(overrides=["diffusion.process=masked"]).model_dump()
    assert passes(masked) == 3.0 and passes(plain) / passes(masked) == pytest.approx(
        1.458, abs=1e-3
    )


def sweep_record(steps: int, guidance: float, fid: float) -> dict:
    return {"run": "full-seed0", "steps": steps, "guidance": guidance,
            "metrics": {"elbo_bits_per_token": 5.0, "classifier/fid": fid}}  # fmt: skip


def test_sampling_table_pools_runs_per_steps_guidance_and_x0_temperature() -> None:
    records = [sweep_record(5, 1.0, 100.0), sweep_record(5, 1.0, 120.0), sweep_record(50, 2.0, 60)]
    records.append({**sweep_record(50, 2.0, 40), "x0_temperature": 0.5})  # older ones: at 1
    lines = load_script().sampling_table(records).splitlines()
    assert lines[0] == "| steps | guidance | x0 T | draws | fid |"
    assert lines[2] == "| 5 | 1 | 1 | 2 | 110 ± 10 |"
    assert lines[3] == "| 50 | 2 | 1 | 1 | 60 |"
    assert lines[4] == "| 50 | 2 | 0.5 | 1 | 40 |"


def test_sampling_table_keeps_variants_apart() -> None:
    records = [sweep_record(5, 1.0, 100.0), {**sweep_record(5, 1.0, 40.0), "run": "masked-seed1"}]
    lines = load_script().sampling_table(records).splitlines()
    assert lines[0] == "| variant | steps | guidance | x0 T | draws | fid |"
    assert lines[2:] == ["| full | 5 | 1 | 1 | 1 | 100 |", "| masked | 5 | 1 | 1 | 1 | 40 |"]


def test_figures_plot_the_sweeps_and_the_sampling_steps(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    ablations = load_script()
    results = [record("full", 0, 70.0, 1.8), record("drop_0.3", 0, 90.0, 1.8),
               record("no_drop", 0, 80.0, 1.9), record("shift_-2", 0, 75.0, 1.7)]  # fmt: skip
    made = ablations.figures(results, tmp_path)
    # m_RD has three points; the shift only two (full and shift_-2), which is still a sweep
    assert [p.name for p in made] == ["diagnostics.png", "sweeps.png"]
    assert all(p.stat().st_size > 1000 for p in made)
    sampling = ablations.sampling_figure([sweep_record(5, 1.0, 100.0)], tmp_path)
    assert sampling.name == "sampling.png" and sampling.stat().st_size > 1000


def test_a_stopped_sweep_resumes_without_repeating_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    ablations = load_script()
    (tmp_path / "results.json").write_text(
        json.dumps([{**record("full", 0, 80.0, 1.8), "steps": 100}])
    )
    ran = []

    def fake_run(args, data, variant, seed):
        ran.append((variant, seed))
        return {**record(variant, seed, 90.0, 1.5), "steps": args.steps}

    monkeypatch.setattr(ablations, "lcmd", lambda *args, **kwargs: None)
    monkeypatch.setattr(ablations, "one_run", fake_run)
    args = argparse.Namespace(out=tmp_path, plugin="text", preset=None, set=[], steps=100,
                              seeds=[0, 1], variants=["full", "no_cm"], jobs=1)  # fmt: skip
    results = ablations.run_all(args)
    assert ran == [("no_cm", 0), ("full", 1), ("no_cm", 1)]  # seed-major, the done run skipped
    assert [(r["variant"], r["seed"]) for r in results] == [("full", 0), *ran]
    assert json.loads((tmp_path / "results.json").read_text()) == results
    # Runs of another length are not mixed into the same results.
    args.steps = 50
    with pytest.raises(SystemExit, match="holds runs of \\[100\\] steps, not 50"):
        ablations.run_all(args)
