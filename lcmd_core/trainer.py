"""The training loop and its run directory: `Trainer(...).fit()`, `.sample()`, `.evaluate()`."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from . import distributed, sharding
from .checkpoint import (
    CheckpointError,
    RunDir,
    append_metrics,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
    write_json_atomic,
)
from .codec import Codec, TokenSpec
from .config import RunConfig, validate_config
from .diffusion_model import DiffusionModel
from .distributed import micro_batch_seed, world_from_env
from .ema import EMA
from .plugins import MetricContext, Plugin, get_plugin
from .prepare import Prepared, load_codec, prepare_data
from .processes import build_model
from .run_guard import RunLockedError, StopRequest, run_lock, stop_requests
from .shards import EpochSampler, ShardError, TokenDataset, check_compatible, read_index


class TrainerError(ValueError):
    """A run cannot start or continue as asked; the message says why and what to do."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped `fit` between steps, after checkpointing the last one."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stopped by signal {signum} at step {step}")
        self.signum, self.step, self.checkpoint = signum, step, checkpoint


@dataclass
class SampleResult:
    """Tokens drawn by `Trainer.sample`, their decoded items and the files written."""

    tokens: torch.Tensor
    labels: torch.Tensor | None
    items: list[Any]
    files: list[Path]
    out_dir: Path


@dataclass
class Run:
    """A trained run loaded by `load_run`: the model (EMA weights, eval mode), codec and config."""

    model: DiffusionModel
    codec: Codec
    config: RunConfig
    spec: TokenSpec
    run_dir: RunDir
    step: int


ACCURACIES = ("acc_t0", "acc_masked")  # the progress line's accuracy, whichever the process logs


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `min_ratio` at `total` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def resolve_device(requested: str) -> torch.device:
    """`auto` → CUDA when available, else CPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainerError("train.device=cuda but no CUDA device is visible; use device=auto")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


class Trainer:
    """Prepares data, trains an LCMD model, writes checkpoints, samples and evaluates.

    `Trainer(config, plugin="example", data="unicode_names", run_dir="runs/x").fit()`; `plugin`
    and `data` override `config.data`. With `resume=True` the run continues from its latest
    checkpoint exactly (weights, EMA, optimizer, RNG, data position); without it, a run
    directory that already holds checkpoints is refused.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        plugin: str | None = None,
        data: str | None = None,
        run_dir: str | Path | None = None,
        resume: bool = False,
        progress: bool = True,
        pm: Any = None,
    ):
        config = config.model_copy(deep=True)
        if plugin is not None:
            config.data.plugin = plugin
        if data is not None:
            config.data.dataset = data
        if not config.data.plugin:
            raise TrainerError("no plugin given: pass --plugin NAME (see `lcmd plugins`)")
        self.pm = pm
        self.plugin: Plugin = get_plugin(config.data.plugin, pm)
        config.data.dataset = self.plugin.dataset(config.data.dataset).name
        self.run = RunDir(run_dir or Path("runs") / f"{config.data.plugin}-{config.data.dataset}")
        self.resume = resume
        if resume and self.run.config_path.is_file():
            config = self._resumed_config(config)
        elif not resume and self.run.latest() is not None:
            raise TrainerError(
                f"{self.run.path} already holds checkpoints; pass --resume to continue it "
                "or choose another --out"
            )
        self.config = config
        self.world = world_from_env()
        self.progress = progress and self.world.is_main
        self.device = resolve_device(config.train.device)
        if self.device.type == "cuda" and self.world.size > 1:
            self.device = torch.device("cuda", self.world.local_rank)
            torch.cuda.set_device(self.device)
        distributed.init(self.world, self.device)
        precision = config.train.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.prepared: Prepared | None = None
        self.model: DiffusionModel | None = None
        self.ema: EMA | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.sampler: EpochSampler | None = None
        self.step = 0
        self.nonfinite_steps = 0
        self.sharded = config.train.strategy == "fsdp" and self.world.size > 1
        self._saved_step = -1  # the step of the newest checkpoint this trainer wrote or read
        # Under FSDP: whole copies of the model and its EMA on rank 0, gathered after training.
        self._eval_copies: dict[str, DiffusionModel] | None = None

    def _resumed_config(self, requested: RunConfig) -> RunConfig:
        saved = validate_config(json.loads(self.run.config_path.read_text()))
        if (saved.data.plugin, saved.data.dataset) != (
            requested.data.plugin,
            requested.data.dataset,
        ):
            raise TrainerError(
                f"{self.run.path} was trained on {saved.data.plugin}/{saved.data.dataset}, "
                f"not {requested.data.plugin}/{requested.data.dataset}"
            )
        # A resumed run keeps its own config; only the length of training may change.
        saved.train.max_steps = requested.train.max_steps
        return saved

    @classmethod
    def from_run(cls, path: str | Path, *, progress: bool = True, pm: Any = None) -> Trainer:
        """Open an existing run directory (for sampling, evaluation or more training)."""
        run = RunDir(path)
        if not run.config_path.is_file():
            raise TrainerError(f"{run.path} is not a run directory (no config.json)")
        config = validate_config(json.loads(run.config_path.read_text()))
        trainer = cls(config, run_dir=run.path, resume=True, progress=progress, pm=pm)
        trainer._load_codec()
        trainer._build()
        if trainer._restore() is None:
            raise TrainerError(f"{run.path} has no checkpoint yet; train it first")
        return trainer

    # ------------------------------------------------------------------------------ setup
    @property
    def shards_dir(self) -> Path:
        """Token shards: `config.data.shards` or the run's own `shards/`."""
        return Path(self.config.data.shards) if self.config.data.shards else self.run.shards_dir

    @property
    def spec(self) -> TokenSpec:
        """The token spec the model is trained on (after `prepare`)."""
        if self.prepared is None:
            raise TrainerError("call prepare() first")
        return self.prepared.spec

    def prepare(self, force: bool = False) -> Prepared:
        """Fit the codec if needed and encode the data set to shards (reused when valid)."""
        self.prepared = prepare_data(
            self.plugin,
            self.config.data,
            self.run.codec_dir,
            self.shards_dir,
            force=force,
            log=self._log,
        )
        return self.prepared

    def _load_codec(self) -> None:
        codec, spec = load_codec(self.plugin, self.config.data, self.run.codec_dir)
        info = self.plugin.dataset(self.config.data.dataset)
        self.prepared = Prepared(
            codec, spec, info, self.config.data.codec or info.default_codec, self.shards_dir
        )

    def _log(self, message: str) -> None:
        if self.progress:
            print(f"lcmd: {message}", flush=True)

    def _build(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.train.seed)
        model = build_model(self.spec, cfg.model, cfg.diffusion, self.pm).to(self.device)
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
        """Load the latest checkpoint into model, EMA and optimizer; returns its state and RNG."""
        latest = self.run.latest()
        if latest is None:
            return None
        ckpt = load_checkpoint(latest)
        state = ckpt["state"]
        saved_fp = state.get("fingerprint")
        if saved_fp != self.spec.fingerprint:
            raise CheckpointError(
                f"{latest} was trained with codec fingerprint {saved_fp}, but the codec in "
                f"{self.run.codec_dir} has {self.spec.fingerprint}; use the matching run"
            )
        # Checkpoints from before the masked process have no "process": they are continuous.
        saved_process = state.get("process", "continuous")
        if saved_process != self.config.diffusion.process:
            raise CheckpointError(
                f"{latest} was trained with diffusion.process={saved_process}, but "
                f"{self.run.config_path} says {self.config.diffusion.process}; use the matching run"
            )
        assert self.model is not None and self.ema is not None and self.optimizer is not None
        model, ema, optimizer = ckpt["model"], ckpt["ema"], ckpt["optimizer"]
        try:
            if self.sharded:  # every process cuts its own shards out of the whole tensors
                model = sharding.shard_state(model, self.model.state_dict())
                if ema is not None:
                    ema = sharding.shard_state(ema, self.ema.state_dict())
                optimizer = sharding.shard_optimizer_state(self.optimizer, optimizer)
            self.model.load_state_dict(model)
            if ema is not None:
                self.ema.load_state_dict(ema, state["ema_updates"])
            self.optimizer.load_state_dict(optimizer)
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{latest} does not fit the model in {self.run.config_path} ({first})"
            ) from None
        self.step = self._saved_step = ckpt["step"]
        self.nonfinite_steps = state.get("nonfinite_steps", 0)
        return {**state, "rng": ckpt["rng"]}

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
            "sampler": self.sampler.state_dict() if self.sampler else None,
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

    def _trim_metrics(self) -> None:
        """Drop metric records logged after the checkpoint we resume from."""
        path = self.run.metrics_path
        if not path.is_file():
            return
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= self.step
        ]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)

    # ---------------------------------------------------------------------------- training
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def fit(self, max_steps: int | None = None) -> dict[str, float]:
        """Train to `max_steps` (default `config.train.max_steps`); returns the last log record.

        Holds the run directory's lock throughout (a second trainer on it is refused). SIGINT
        or SIGTERM stops training after the current step: the step is checkpointed and
        `TrainingInterrupted` raised; a second Ctrl-C interrupts at once.
        """
        if max_steps is not None:
            self.config.train.max_steps = max_steps
        lock = run_lock(self.run.path) if self.world.is_main else contextlib.nullcontext()
        try:
            with lock, stop_requests() as stop:
                return self._fit(stop)
        except RunLockedError as err:
            raise TrainerError(str(err)) from None

    def _fit(self, stop: StopRequest) -> dict[str, float]:
        cfg = self.config
        total = cfg.train.max_steps
        micro, accum = self._batch_sizes()
        if self.sampler is None:  # the first fit() of this trainer: set up or resume
            if not self.world.is_main:  # rank 0 prepares; the others then reuse its files
                distributed.barrier(self.world)
            self.prepare()
            if self.world.is_main:
                distributed.barrier(self.world)
            self._build()
            train_set = TokenDataset(self.shards_dir, "train")
            check_compatible(train_set.index, self.spec)
            self.sampler = EpochSampler(len(train_set), cfg.train.seed)
            resumed = self._restore() if self.resume else None
            if resumed:
                if self.world.is_main:  # rank 0 alone writes the metrics file
                    self._trim_metrics()
                if resumed.get("sampler"):
                    self.sampler.load_state_dict(resumed["sampler"])
                restore_rng(resumed["rng"])
                self._log(f"resuming {self.run.path} from step {self.step}")
            else:
                torch.manual_seed(cfg.train.seed)
        else:  # a later fit() continues in memory
            train_set = TokenDataset(self.shards_dir, "train")
        if self.world.is_main:
            self.run.path.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.run.config_path, cfg.model_dump(mode="json"))
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
        with self._progress(total) as advance:
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
                    if self.world.is_main:
                        append_metrics(self.run.metrics_path, record)
                if self.step % cfg.train.checkpoint_every == 0 or last:
                    self._save()
                preview = cfg.train.sample_every and self.step % cfg.train.sample_every == 0
                if preview and self.sharded:
                    self._eval_copies = self._gather_eval_copies()
                if preview and self.world.is_main:
                    self.sample(out_dir=self.run.samples_dir / f"preview-{self.step:07d}")
                if self.world.is_main:
                    advance(self.step, values, tokens_per_s)
                self._stop_if(signum)
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
            copy = build_model(self.spec, self.config.model, self.config.diffusion, self.pm)
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
        optim = self.config.optim
        factor = lr_factor(self.step, optim.warmup_steps, total, optim.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        # Every process draws the whole global batch from the same sampler and takes its own
        # micro-batches; each micro-batch has its own random stream, so the losses do not
        # depend on the number of processes.
        total_micro = accum * self.world.size
        mine = range(self.world.rank * accum, (self.world.rank + 1) * accum)
        for k in range(total_micro):
            idx = self.sampler.next_batch(micro)
            if k not in mine:
                continue
            if self.sharded:  # reduce-scatter the gradients after the last micro-batch only
                self.model.set_requires_gradient_sync(k == mine[-1])
            tokens = train_set.tokens(idx).to(self.device, non_blocking=True)
            labels = train_set.labels(idx) if self.spec.num_classes else None
            seed = micro_batch_seed(self.config.train.seed, self.step, self.nonfinite_steps, k)
            generator = torch.Generator(self.device).manual_seed(seed)
            with self._autocast():
                out = self.model.loss(tokens, labels, generator=generator)
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

    @contextlib.contextmanager
    def _progress(self, total: int) -> Iterator[Any]:
        if not self.progress:
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
            task = bar.add_task("train", total=total, completed=self.step, info="")

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

    # ---------------------------------------------------------------------------- sampling
    def _eval_model(self, use_ema: bool | None) -> DiffusionModel:
        assert self.model is not None and self.ema is not None
        use = self.config.sample.use_ema if use_ema is None else use_ema
        if self.sharded:
            if self._eval_copies is None:
                raise TrainerError("a sharded model samples on rank 0 after fit()")
            return self._eval_copies["ema" if use else "model"].eval()
        return (self.ema.module if use else self.model).eval()

    def _labels_for(self, n: int, labels: torch.Tensor | int | None) -> torch.Tensor | None:
        if not self.spec.num_classes:
            if labels is not None:
                raise TrainerError("labels were given but this run is unconditional")
            return None
        if labels is None:
            return torch.arange(n) % self.spec.num_classes
        if isinstance(labels, int):
            if not 0 <= labels < self.spec.num_classes:
                raise TrainerError(f"label {labels} is outside [0, {self.spec.num_classes})")
            return torch.full((n,), labels)
        return labels

    def sample(
        self,
        n: int | None = None,
        *,
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        labels: torch.Tensor | int | None = None,
        seed: int = 0,
        temperature: float | None = None,
        use_ema: bool | None = None,
        known: torch.Tensor | None = None,
        out_dir: str | Path | None = None,
    ) -> SampleResult:
        """Draw samples, decode them through the codec and write them with `tokens.safetensors`."""
        sc = self.config.sample
        n = n or sc.num_samples
        steps, sampler = steps or sc.steps, sampler or sc.sampler
        guidance = sc.guidance if guidance is None else guidance
        temperature = sc.temperature if temperature is None else temperature
        label_tensor = self._labels_for(n, labels)
        if label_tensor is None:
            guidance = 1.0
        process = self.config.diffusion.process
        if process == "masked" and sampler != "ancestral":
            raise TrainerError(
                f"sampler {sampler} is for diffusion.process=continuous; this run is masked, "
                "which samples by ancestral unmasking (--sampler ancestral)"
            )
        model = self._eval_model(use_ema)
        if temperature is None:
            temperature = model.default_temperature
        tokens = model.sample(
            n,
            steps=steps,
            labels=label_tensor,
            guidance=guidance,
            known=known,
            seed=seed,
            sampler=sampler,
            temperature=temperature,
        ).cpu()
        out = (
            Path(out_dir) if out_dir else self.run.samples_dir / f"step-{self.step:07d}-seed-{seed}"
        )
        out.mkdir(parents=True, exist_ok=True)
        items = self.prepared.codec.decode(tokens)
        files = list(self.prepared.codec.write(items, out))
        saved = {"tokens": tokens.contiguous()}
        if label_tensor is not None:
            saved["labels"] = label_tensor.long().contiguous()
        save_file(saved, out / "tokens.safetensors")
        protocol = {
            "step": self.step,
            "process": self.config.diffusion.process,
            "n": n,
            "steps": steps,
            "sampler": sampler,
            "guidance": guidance,
            "temperature": temperature,
            "seed": seed,
            "ema": self.config.sample.use_ema if use_ema is None else use_ema,
            "fingerprint": self.spec.fingerprint,
        }
        write_json_atomic(out / "sample.json", protocol)
        return SampleResult(tokens, label_tensor, items, files, out)

    # --------------------------------------------------------------------------- evaluation
    def evaluate(
        self,
        split: str = "test",
        n_samples: int | None = None,
        seed: int = 0,
        max_sequences: int | None = 4096,
        use_ema: bool | None = None,
        steps: int | None = None,
        guidance: float | None = None,
    ) -> dict[str, Any]:
        """ELBO bits/token on a held-out split and the plugin's metrics on fresh samples.

        `steps` and `guidance` override the run's sampling settings for the samples. Writes
        `metrics.json` in the run directory with the protocol next to every number.
        """
        if not (self.shards_dir / "index.json").is_file():
            raise ShardError(f"no token shards in {self.shards_dir}; run `lcmd prepare` first")
        index = read_index(self.shards_dir)
        check_compatible(index, self.spec)
        if split not in index["splits"]:
            raise TrainerError(
                f"split {split!r} is not in {self.shards_dir} "
                f"(splits: {', '.join(index['splits'])})"
            )
        data = TokenDataset(self.shards_dir, split)
        model = self._eval_model(use_ema)
        count = min(len(data), max_sequences or len(data))
        micro, _ = self._batch_sizes()
        generator = torch.Generator(device=self.device).manual_seed(seed)
        bits = []
        for start in range(0, count, micro):
            idx = torch.arange(start, min(count, start + micro))
            tokens = data.tokens(idx).to(self.device)
            labels = data.labels(idx) if self.spec.num_classes else None
            with self._autocast():
                bits.append(model.elbo(tokens, labels, generator=generator).float().cpu())
        per_seq = torch.cat(bits)
        stderr = float(per_seq.std() / math.sqrt(len(per_seq))) if len(per_seq) > 1 else 0.0
        results: dict[str, Any] = {
            "elbo_bits_per_token": float(per_seq.mean()),
            "elbo_bits_per_token_stderr": stderr,
        }
        n_samples = n_samples or self.config.sample.num_samples
        metric_protocols: dict[str, dict[str, Any]] = {}
        if self.plugin.metrics:
            drawn = self.sample(
                n_samples,
                steps=steps,
                guidance=guidance,
                seed=seed,
                use_ema=use_ema,
                out_dir=self.run.samples_dir / f"eval-{self.step:07d}",
            )
            refs = self.prepared.codec.decode(data.tokens(torch.arange(count)))
            root = self.config.data.data_root
            context = MetricContext(
                dataset=self.prepared.dataset,
                split=split,
                sample_labels=None if drawn.labels is None else drawn.labels.tolist(),
                load=functools.partial(
                    self.prepared.dataset.load, data_root=Path(root).expanduser() if root else None
                ),
                cache_dir=self.run.path / "metric_cache",
                elbo_bits_per_token=results["elbo_bits_per_token"],
            )
            for name, metric in self.plugin.metrics.items():
                metric_context = replace(context, protocol={})
                scores = metric.compute(drawn.items, refs, self.prepared.codec, metric_context)
                for key, value in scores.items():
                    results[f"{name}/{key}"] = float(value)
                if scores and metric_context.protocol:
                    metric_protocols[name] = metric_context.protocol
        protocol = {
            "process": self.config.diffusion.process,
            "split": split,
            "sequences": count,
            "seed": seed,
            "samples": n_samples,
            "steps": steps or self.config.sample.steps,
            "sampler": self.config.sample.sampler,
            "temperature": model.default_temperature
            if self.config.sample.temperature is None
            else self.config.sample.temperature,
            "guidance": self.config.sample.guidance if guidance is None else guidance,
            "ema": self.config.sample.use_ema if use_ema is None else use_ema,
            "checkpoint_step": self.step,
            "fingerprint": self.spec.fingerprint,
            "metrics": metric_protocols,
        }
        write_json_atomic(
            self.run.path / "metrics.json", {"metrics": results, "protocol": protocol}
        )
        return results


def load_run(path: str | Path, *, pm: Any = None) -> Run:
    """Load a run directory: its model with EMA weights (eval mode), fitted codec and config."""
    trainer = Trainer.from_run(path, progress=False, pm=pm)
    model = trainer._eval_model(use_ema=True)
    return Run(
        model, trainer.prepared.codec, trainer.config, trainer.spec, trainer.run, trainer.step
    )
