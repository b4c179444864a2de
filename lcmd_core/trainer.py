"""The training loop: `Trainer(...).fit()` — optimizer, steps, checkpoint cadence, data parallelism.

The run directory, its config and prepared data come from a `RunSetup`; sampling and evaluation
of the weights in training go through `lcmd_core.sampling.Run` like those of a finished run.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from . import distributed, sharding
from .checkpoint import save_checkpoint
from .codec import Codec, TokenSpec
from .config import RunConfig
from .device import autocast, autocast_dtype, resolve_device
from .diffusion_model import DiffusionModel
from .distributed import micro_batch_seed, world_from_env
from .ema import EMA
from .lr_schedule import lr_factor
from .plugins import Plugin
from .prepare import Prepared
from .processes import build_model
from .progress import training_progress
from .resources import check_training
from .resume import read_config, restore_newest, restore_position, trim_metrics
from .run_dir import RunDir, RunError
from .run_guard import StopRequest, stop_requests
from .run_setup import RunSetup
from .sampling import Run, SampleResult
from .shards import BatchOrder, TokenDataset, check_compatible
from .tracking import RunLog

OnStep = Callable[["Trainer", dict[str, float]], None]


class TrainerError(RunError):
    """Training cannot start or continue as asked; the message says why and what to do."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped `fit` between steps, after checkpointing the last one."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by signal {signum} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


class Trainer:
    """Trains an LCMD model on a run directory, writes checkpoints, samples and evaluates.

    `Trainer(config, plugin="example", data="unicode_names", run_dir="runs/x").fit()` opens the
    run directory through `RunSetup` (which a caller may also pass as `config`, alone). With
    `resume=True` the run continues from its latest checkpoint exactly (weights, EMA, optimizer,
    RNG, data position). `on_step(trainer, values)` is called on every process after each
    optimizer step (after its checkpoint), with the step's logged values.
    """

    def __init__(
        self,
        config: RunConfig | RunSetup,
        *,
        plugin: str | Plugin | None = None,
        data: str | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        pm: Any = None,
        on_step: OnStep | None = None,
    ):
        if isinstance(config, RunSetup):
            if (plugin, data, run_dir, pm) != (None, None, None, None) or resume:
                raise TrainerError("Trainer(setup) takes its plugin, data and run from the setup")
            self.setup = config
        else:
            self.setup = RunSetup(
                config, plugin=plugin, data=data, run_dir=run_dir, resume=resume, pm=pm
            )
        self.on_step = on_step
        self.world = world_from_env()
        self.progress = progress and self.world.is_main
        self.device = resolve_device(self.config.train.device)
        if self.device.type == "cuda" and self.world.size > 1:
            self.device = torch.device("cuda", self.world.local_rank)
            torch.cuda.set_device(self.device)
        distributed.init(self.world, self.device)
        self.autocast_dtype = autocast_dtype(self.config.train, self.device)
        self.model: DiffusionModel | None = None
        self.ema: EMA | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.batch_order: BatchOrder | None = None
        self.step = 0
        self.nonfinite_steps = 0
        self.sharded = self.config.train.strategy == "fsdp" and self.world.size > 1
        self._saved_step = -1  # the step of the newest checkpoint this trainer wrote or read
        # Under FSDP: whole copies of the model and its EMA on rank 0, gathered after training.
        self._eval_copies: dict[str, DiffusionModel] | None = None

    @classmethod
    def from_run(cls, path: str | Path, *, progress: bool = True, pm: Any = None) -> Trainer:
        """A run directory at its latest checkpoint, to train further (`load_run` to sample)."""
        config = read_config(RunDir(path))
        trainer = cls(config, run_dir=path, resume=True, progress=progress, pm=pm)
        trainer.setup.load_codec()
        trainer._build()
        if trainer._restore() is None:
            raise TrainerError(f"{trainer.run.path} has no checkpoint yet; train it first")
        return trainer

    # ------------------------------------------------------------------------------ the run
    @property
    def config(self) -> RunConfig:
        return self.setup.config

    @property
    def run(self) -> RunDir:
        """The run directory's paths."""
        return self.setup.dir

    @property
    def spec(self) -> TokenSpec:
        """The token spec the model is trained on (after `prepare`)."""
        return self.setup.spec

    @property
    def codec(self) -> Codec:
        """The fitted codec (after `prepare`): `encode`, `decode`, `prompt_tokens` if it has one."""
        if self.setup.prepared is None:
            raise TrainerError("call prepare() first")
        return self.setup.prepared.codec

    def prepare(self, force: bool = False) -> Prepared:
        """Fit the codec if needed and encode the data set to shards (reused when valid)."""
        return self.setup.prepare(force, log=self._log)

    def _log(self, message: str) -> None:
        if self.progress:
            print(f"lcmd: {message}", flush=True)

    def _warn(self, message: str) -> None:
        if self.world.is_main:
            print(f"lcmd: warning: {message}", file=sys.stderr, flush=True)

    def _build(self) -> None:
        cfg = self.config
        check_training(self.spec, cfg.model, self._batch_sizes()[0], self.device)
        torch.manual_seed(cfg.train.seed)
        model = build_model(self.spec, cfg.model, cfg.diffusion, self.setup.pm).to(self.device)
        ema = EMA(model, cfg.optim.ema_decay)
        if self.sharded:  # the optimizer must see the sharded parameters
            sharding.shard([model, ema.module], self.device, self.world.size)
        if cfg.train.compile:
            model.denoiser.forward = torch.compile(model.denoiser.forward)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        groups = model.param_groups(cfg.optim.lr, cfg.optim.embed_lr, cfg.optim.weight_decay)
        for group in groups:
            group["base_lr"] = group["lr"]
        fused = self.device.type == "cuda" and not self.sharded
        self.model = model
        self.optimizer = torch.optim.AdamW(groups, betas=cfg.optim.betas, fused=fused)
        self.ema = ema

    def _batch_sizes(self) -> tuple[int, int]:
        """(micro-batch size, micro-batches per process and optimizer step)."""
        train, processes = self.config.train, self.world.size
        micro = train.micro_batch_size or train.global_batch_size // processes
        if micro < 1 or train.global_batch_size % (micro * processes):
            raise TrainerError(
                f"train.global_batch_size ({train.global_batch_size}) must be a multiple of "
                f"train.micro_batch_size ({micro}) × processes ({processes})"
            )
        return micro, train.global_batch_size // (micro * processes)

    # ---------------------------------------------------------------------------- checkpoints
    def _restore(self) -> dict[str, Any] | None:
        """Load the newest readable checkpoint into model, EMA and optimizer (a corrupt newer one
        is skipped with a warning); returns its state and RNG, None when there is none."""
        assert self.model is not None and self.ema is not None and self.optimizer is not None
        state = restore_newest(
            self.run,
            self._warn,
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            spec=self.spec,
            config=self.config,
            sharded=self.sharded,
        )
        if state is None:
            return None
        self.step = self._saved_step = state["step"]
        self.nonfinite_steps = state.get("nonfinite_steps", 0)
        return state

    def _save(self) -> Path | None:
        """Checkpoint this step: rank 0 writes; under FSDP every process first gathers its
        shards into whole tensors (so every process must call this). Returns rank 0's path."""
        assert self.model is not None and self.ema is not None and self.optimizer is not None
        keep = self.world.is_main
        if self.sharded or keep:
            model = sharding.full(self.model.state_dict(), keep)
            ema = sharding.full(self.ema.state_dict(), keep)
            optimizer = sharding.full(self.optimizer.state_dict(), keep)
        if not keep:
            self._saved_step = self.step
            return None
        state = {
            "fingerprint": self.spec.fingerprint,
            "process": self.config.diffusion.process,
            "spec": self.spec.to_json(),
            "ema_updates": self.ema.num_updates,
            "batch_order": self.batch_order.state_dict() if self.batch_order else None,
            "nonfinite_steps": self.nonfinite_steps,
        }
        path = save_checkpoint(
            self.run,
            self.step,
            model=model,
            ema=ema,
            optimizer=optimizer,
            state=state,
            keep_last=self.config.train.keep_checkpoints,
        )
        self._saved_step = self.step
        return path

    # ---------------------------------------------------------------------------- training
    def fit(self, max_steps: int | None = None) -> dict[str, float]:
        """Train to `max_steps` (default `config.train.max_steps`); returns the last log record.

        Holds the run directory's lock throughout (a second trainer on it is refused). SIGINT
        or SIGTERM stops training after the current step: the step is checkpointed and
        `TrainingInterrupted` raised; a second Ctrl-C interrupts at once.
        """
        if max_steps is not None:
            self.config.train.max_steps = max_steps
        lock = self.setup.lock() if self.world.is_main else contextlib.nullcontext()
        with lock, stop_requests() as stop:
            return self._fit(stop)

    def _start(self) -> None:
        """The first `fit` of this trainer: prepare, build, and resume where asked."""
        if not self.world.is_main:  # rank 0 prepares; the others then reuse its files
            distributed.barrier(self.world)
        self.prepare()
        if self.world.is_main:
            distributed.barrier(self.world)
        self._build()
        train_set = TokenDataset(self.setup.shards_dir, "train")
        check_compatible(train_set.index, self.spec)
        self.batch_order = BatchOrder(len(train_set), self.config.train.seed)
        resumed = self._restore() if self.setup.resume else None
        if not resumed:
            torch.manual_seed(self.config.train.seed)
            return
        if self.world.is_main:  # rank 0 alone writes the metrics file
            trim_metrics(self.run.metrics_path, self.step, self._warn)
        restore_position(resumed, self.batch_order, self.run.step_dir(self.step))
        self._log(f"resuming {self.run.path} from step {self.step}")

    def _fit(self, stop: StopRequest) -> dict[str, float]:
        cfg = self.config
        total = cfg.train.max_steps
        micro, accum = self._batch_sizes()
        if self.batch_order is None:
            self._start()
        assert self.model is not None
        train_set = TokenDataset(self.setup.shards_dir, "train")
        if self.world.is_main:
            self.setup.write_config()
        precision = "bf16 autocast" if self.autocast_dtype else "fp32"
        processes = ""
        if self.world.size > 1:
            processes = f"{self.world.size} processes ({cfg.train.strategy}), "
        self._log(
            f"{processes}{self.device.type}, {precision}, "
            f"{self.model.describe_network(self.device)}, "
            f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M parameters"
        )
        record: dict[str, float] = {}
        tokens_per_step = cfg.train.global_batch_size * self.spec.seq_len
        log = RunLog(self.run, cfg.train.log_to, enabled=self.world.is_main)
        with training_progress(total, self.step, self.progress) as advance, log:
            while self.step < total:
                started = time.perf_counter()
                values = self._train_step(train_set, micro, accum, total)
                signum = distributed.max_int(stop.signum or 0, self.world, self.device)
                if values is None:
                    self._stop_if(signum)
                    continue
                self.step += 1
                tokens_per_s = tokens_per_step / (time.perf_counter() - started)
                last = self.step == total
                # Gathers first: under FSDP every process takes part in them.
                if self.step % cfg.train.log_every == 0 or last:
                    diagnostics = self._diagnostics()
                    record = {"step": self.step, **values, "tokens_per_s": tokens_per_s}
                    record.update({f"embed/{k}": v for k, v in diagnostics.items()})
                    log.record(record)
                if self.step % cfg.train.checkpoint_every == 0 or last:
                    self._save()
                preview = cfg.train.sample_every and self.step % cfg.train.sample_every == 0
                if preview and self.sharded:
                    self._eval_copies = self._gather_eval_copies()
                if preview and self.world.is_main:
                    drawn = self.sample(out_dir=self.run.samples_dir / f"preview-{self.step:07d}")
                    log.preview(self.step, drawn.out_dir)
                if self.world.is_main:
                    advance(self.step, values, tokens_per_s)
                self._stop_if(signum)
                if self.on_step is not None:
                    self.on_step(self, values)
        if self.sharded:
            self._eval_copies = self._gather_eval_copies()
        return record if self.world.is_main else {}

    def _diagnostics(self) -> dict[str, float]:
        """The embedding-collapse diagnostics; under FSDP every process gathers the table."""
        assert self.model is not None
        if not self.sharded:
            return self.model.diagnostics() if self.world.is_main else {}
        self.model.unshard()  # the embeddings belong to the root unit
        try:
            return self.model.diagnostics()
        finally:
            self.model.reshard()

    def _gather_eval_copies(self) -> dict[str, DiffusionModel] | None:
        """Whole, unsharded copies of the model and its EMA on rank 0 (every process calls)."""
        assert self.model is not None and self.ema is not None
        states = {"model": self.model.state_dict(), "ema": self.ema.state_dict()}
        states = sharding.full(states, keep=self.world.is_main)
        if not self.world.is_main:
            return None
        copies = {}
        for name, state in states.items():
            copy = build_model(self.spec, self.config.model, self.config.diffusion, self.setup.pm)
            copy.load_state_dict(state)
            copies[name] = copy.to(self.device).requires_grad_(False)
        return copies

    def _stop_if(self, signum: int) -> None:
        """After a signal: checkpoint the last finished step (rank 0 writes) and stop."""
        if not signum:
            return
        checkpoint = None
        if self.step > 0:
            if self._saved_step != self.step:
                self._save()
            checkpoint = self.run.step_dir(self.step) if self.world.is_main else None
        raise TrainingInterrupted(signum, self.step, checkpoint)

    def _train_step(
        self, train_set: TokenDataset, micro: int, accum: int, total: int
    ) -> dict[str, float] | None:
        assert self.model is not None and self.optimizer is not None and self.ema is not None
        assert self.batch_order is not None
        optim = self.config.optim
        factor = lr_factor(self.step, optim.warmup_steps, total, optim.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        # Every process draws the whole global batch from the same batch order and takes its own
        # micro-batches; each micro-batch has its own random stream, so the losses do not
        # depend on the number of processes.
        teacher = self.ema.module if self.config.diffusion.cm_target_weights == "ema" else None
        total_micro = accum * self.world.size
        mine = range(self.world.rank * accum, (self.world.rank + 1) * accum)
        with self.model.one_step():
            for k in range(total_micro):
                idx = self.batch_order.next_batch(micro)
                if k not in mine:
                    continue
                if self.sharded:  # reduce-scatter the gradients after the last micro-batch only
                    self.model.set_requires_gradient_sync(k == mine[-1])
                tokens = train_set.tokens(idx).to(self.device, non_blocking=True)
                labels = train_set.labels(idx) if self.spec.num_classes else None
                seed = micro_batch_seed(self.config.train.seed, self.step, self.nonfinite_steps, k)
                generator = torch.Generator(self.device).manual_seed(seed)
                with autocast(self.device, self.autocast_dtype):
                    out = self.model.loss(tokens, labels, generator=generator, target=teacher)
                (out["total"] / total_micro).backward()
                for key, value in out.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach()) / total_micro
        sums = distributed.sum_values(sums, self.world, self.device)
        if not self.sharded:
            distributed.sum_gradients(list(self.model.parameters()), self.world)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), optim.grad_clip)
        grad_norm = float(sharding.full(norm))
        if not (math.isfinite(sums["total"]) and math.isfinite(grad_norm)):
            self.nonfinite_steps += 1
            self.optimizer.zero_grad(set_to_none=True)
            if self.nonfinite_steps > self.config.train.max_nonfinite_steps:
                last = self.run.latest()
                raise TrainerError(
                    f"non-finite loss or gradient at step {self.step + 1} "
                    f"({self.nonfinite_steps} such steps); last good checkpoint: {last}"
                )
            return None
        self.optimizer.step()
        self.ema.update(self.model)
        return {**sums, "grad_norm": grad_norm, "lr": optim.lr * factor}

    # ---------------------------------------------------------------------- sampling, eval
    def as_run(self) -> Run:
        """The weights in training as a `Run` (EMA and training weights share memory with it)."""
        prepared = self.setup.prepared
        assert self.model is not None and self.ema is not None and prepared is not None
        copies = {"ema": self.ema.module, "model": self.model}
        if self.sharded:
            if self._eval_copies is None:
                raise TrainerError("a sharded model samples on rank 0 after fit()")
            copies = self._eval_copies
        return Run(
            copies["ema"],
            prepared.codec,
            self.config,
            prepared.spec,
            self.run,
            self.step,
            training_model=copies["model"],
            plugin=self.setup.plugin,
            prepared=prepared,
            device=self.device,
            autocast_dtype=self.autocast_dtype,
        )

    def sample(self, n: int | None = None, **options: Any) -> SampleResult:
        """`Run.sample` on the weights in training (see `lcmd_core.sampling.Run.sample`)."""
        return self.as_run().sample(n, **options)

    def evaluate(self, split: str = "test", **options: Any) -> dict[str, Any]:
        """`Run.evaluate` on the weights in training: ELBO and metrics → metrics.json."""
        return self.as_run().evaluate(split, **options)
