"""The layout of a run directory, and the error for a run that cannot be used as asked."""

from __future__ import annotations

import os
import re
from pathlib import Path

_STEP_DIR = re.compile(r"step-(\d+)")


class RunError(ValueError):
    """A run cannot be opened, trained, sampled or evaluated as asked; the message says why."""


class RunDir:
    """Paths of a run directory: config, fitted codec, metrics, checkpoints, samples, shards."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def codec_dir(self) -> Path:
        return self.path / "codec"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def shards_dir(self) -> Path:
        return self.path / "shards"

    def data_shards(self, configured: str | None) -> Path:
        """Token shards: `configured` (`config.data.shards`) or the run's own `shards/`."""
        return Path(configured) if configured else self.shards_dir

    def step_dir(self, step: int) -> Path:
        """`checkpoints/step-NNNNNNN` for `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return self.checkpoints_dir / f"step-{step:07d}"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoint directories (those with `state.json`), oldest step first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [
            (int(match[1]), path)
            for path in self.checkpoints_dir.iterdir()
            if (match := _STEP_DIR.fullmatch(path.name)) and (path / "state.json").is_file()
        ]
        return [path for _, path in sorted(found)]

    def latest(self) -> Path | None:
        """The complete checkpoint with the highest step, None when there is none."""
        complete = self.checkpoints()
        return complete[-1] if complete else None
