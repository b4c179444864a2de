"""A run directory opened for work: its config, plugin, resume decision, fitted codec and lock.

`RunSetup` knows nothing of models or optimizers; `Trainer` trains on one, and
`lcmd_core.sampling.load_run` samples from a finished one.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .checkpoint import write_json_atomic
from .codec import TokenSpec
from .config import RunConfig
from .plugins import Plugin, get_plugin
from .prepare import Prepared, load_prepared, prepare_data
from .resume import resumed_config
from .run_dir import RunDir, RunError
from .run_guard import LOCK_FILE, RunLockedError, run_lock


class RunSetup:
    """A run directory with the config it trains with, its plugin and its prepared data.

    `RunSetup(config, plugin="example", data="unicode_names", run_dir="runs/x")`; `plugin` (a
    name or a loaded `Plugin`) and `data` override `config.data`. With `resume=True` a run
    directory that holds a config keeps it (only `train.max_steps` may change); without it, a
    run directory that already holds checkpoints is refused.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        plugin: str | Plugin | None = None,
        data: str | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        pm: Any = None,
    ):
        config = config.model_copy(deep=True)
        if isinstance(plugin, Plugin):
            self.plugin = plugin
            config.data.plugin = plugin.name
        else:
            if plugin is not None:
                config.data.plugin = plugin
            if not config.data.plugin:
                raise RunError("no plugin given: pass --plugin NAME (see `lcmd plugins`)")
            self.plugin = get_plugin(config.data.plugin, pm)
        if data is not None:
            config.data.dataset = data
        config.data.dataset = self.plugin.dataset(config.data.dataset).name
        self.pm = pm
        self.dir = RunDir(run_dir or Path("runs") / f"{config.data.plugin}-{config.data.dataset}")
        self.resume = resume
        if self.dir.path.exists() and not self.dir.path.is_dir():
            raise RunError(f"{self.dir.path} is a file, not a run directory; choose another --out")
        if resume and self.dir.config_path.is_file():
            config = resumed_config(self.dir, config)
        elif not resume and self.dir.latest() is not None:
            raise RunError(
                f"{self.dir.path} already holds checkpoints; pass --resume to continue it "
                "or choose another --out"
            )
        self.config = config
        self.prepared: Prepared | None = None

    @property
    def shards_dir(self) -> Path:
        """Token shards: `config.data.shards` or the run's own `shards/`."""
        return self.dir.data_shards(self.config.data.shards)

    @property
    def spec(self) -> TokenSpec:
        """The token spec the model trains on (after `prepare` or `load_codec`)."""
        if self.prepared is None:
            raise RunError("call prepare() first")
        return self.prepared.spec

    def prepare(self, force: bool = False, log: Callable[[str], None] | None = None) -> Prepared:
        """Fit the codec if needed and encode the data set to shards (reused when valid)."""
        self.prepared = prepare_data(
            self.plugin,
            self.config.data,
            self.dir.codec_dir,
            self.shards_dir,
            force=force,
            log=log or (lambda message: None),
        )
        return self.prepared

    def load_codec(self) -> Prepared:
        """The codec fitted earlier, restored from the run's `codec/` (nothing is encoded)."""
        self.prepared = load_prepared(
            self.plugin, self.config.data, self.dir.codec_dir, self.shards_dir
        )
        return self.prepared

    def write_config(self) -> None:
        """Record the config in `config.json` (creating the run directory)."""
        self.dir.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.dir.config_path, self.config.model_dump(mode="json"))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run directory's training lock; a second holder is refused with a RunError.

        A run directory this lock created is removed again when the work inside fails before
        writing anything into it: a failed start leaves no empty run directory behind.
        """
        created = not self.dir.path.exists()
        try:
            with run_lock(self.dir.path):
                yield
        except RunLockedError as err:
            raise RunError(str(err)) from None
        except BaseException:
            if created and _holds_only_the_lock(self.dir.path):
                shutil.rmtree(self.dir.path, ignore_errors=True)
            raise


def _holds_only_the_lock(path: Path) -> bool:
    """No file in `path` (or below it) but the lock."""
    return all(p.is_dir() or p.name == LOCK_FILE for p in path.rglob("*"))
