"""The training progress bar: step, loss, bits/token, accuracy and throughput."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

ACCURACIES = ("acc_t0", "acc_masked")  # the progress line's accuracy, whichever the process logs

Advance = Callable[[int, dict[str, float] | None, float], None]


@contextlib.contextmanager
def training_progress(total: int, completed: int, enabled: bool) -> Iterator[Advance]:
    """A rich progress bar over `total` steps; yields `advance(step, values, tokens_per_s)`."""
    if not enabled:
        yield lambda *args: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("train", total=total, completed=completed, info="")

        def advance(step: int, values: dict[str, float] | None, tokens_per_s: float) -> None:
            info = ""
            if values:
                # accuracy at t = 0 (continuous) or on the masked tokens (masked)
                acc = next(f"{k} {values[k]:.2f} " for k in ACCURACIES if k in values)
                info = (
                    f"loss {values['total']:.3f} bits/tok {values['bits_per_token']:.3f} "
                    f"{acc}{tokens_per_s:,.0f} tok/s"
                )
            bar.update(task, completed=step, info=info)

        yield advance
