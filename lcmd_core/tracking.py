"""Where a run's training records go: `metrics.jsonl` always, TensorBoard when asked.

`RunLog.record` appends one record (loss terms, gradient norm, learning rate, throughput,
collapse diagnostics) to `metrics.jsonl` and, with `train.log_to: [tensorboard]`, writes every
scalar of it to `RUN/tensorboard/`; `RunLog.preview` adds a preview's PNG images (or the
start of its text) there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoint import append_metrics
from .run_dir import RunDir, RunError

PREVIEW_TEXT_CHARS = 4000


class RunLog:
    """The training records of one run directory; a context manager that closes its writers.

    Only the main process writes: with `enabled=False` every call does nothing.
    """

    def __init__(self, run: RunDir, log_to: list[str], enabled: bool = True) -> None:
        self.path = run.metrics_path
        self.enabled = enabled
        self.writer: Any = None
        if enabled and "tensorboard" in log_to:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RunError(
                    "train.log_to=[tensorboard] needs the tensorboard package: "
                    "pip install 'lcmd-core[tensorboard]' (or drop it from train.log_to)"
                ) from None
            self.writer = SummaryWriter(log_dir=str(run.path / "tensorboard"))

    def record(self, record: dict[str, Any]) -> None:
        """Append `record` (with its `step`) to metrics.jsonl and the TensorBoard scalars."""
        if not self.enabled:
            return
        append_metrics(self.path, record)
        if self.writer is None:
            return
        step = int(record["step"])
        for key, value in record.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def preview(self, step: int, directory: Path) -> None:
        """A preview's images (PNG files) or, without any, its text files, for TensorBoard."""
        if self.writer is None:
            return
        images = sorted(directory.glob("*.png"))
        for image in images:
            import numpy as np
            from PIL import Image

            pixels = np.asarray(Image.open(image).convert("RGB"))
            self.writer.add_image(f"preview/{image.stem}", pixels, step, dataformats="HWC")
        if not images:
            for text in sorted(directory.glob("*.txt"))[:1] + sorted(directory.glob("*.smi"))[:1]:
                body = text.read_text(encoding="utf-8", errors="replace")[:PREVIEW_TEXT_CHARS]
                self.writer.add_text(f"preview/{text.name}", f"```\n{body}\n```", step)
        self.writer.flush()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The records of a metrics.jsonl, and how many non-blank lines are not records (a torn last
    line from a kill mid-write, bytes that are not text)."""
    records, unreadable = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            unreadable += bool(line.strip())
            continue
        if isinstance(record, dict) and type(record.get("step")) is int:
            records.append(record)
        else:
            unreadable += 1
    return records, unreadable
