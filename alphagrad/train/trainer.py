"""The training loop: a GPT or Llama on prepared token data, with checkpoints that resume
bit for bit.

    >>> trainer = Trainer(TrainConfig(data_dir="data/shakespeare", max_iters=2000))
    >>> trainer.fit()                                   # Ctrl-C saves a checkpoint and stops
    >>> trainer = Trainer.resume("runs/20260101-120000")  # continues exactly where it stopped

Everything random is either the library generator (init, dropout) or the batch sampler's own
generator; both states go into every checkpoint with the model, the optimizer and the counters,
so N steps straight and N/2 + resume + N/2 give identical weights and losses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from alphagrad.autograd.creation import from_numpy
from alphagrad.nn import init
from alphagrad.nn.families import family, from_pretrained, from_state_dict
from alphagrad.nn.gpt import GPTConfig
from alphagrad.nn.lm import LanguageModel
from alphagrad.nn.optim.schedules import warmup_cosine
from alphagrad.nn.utils import clip_grad_norm_
from alphagrad.tensor.memory import available_memory, keep_freed_memory
from alphagrad.tensor.random import get_rng_state, manual_seed, set_rng_state
from alphagrad.tensor.threads import get_num_threads, set_num_threads
from alphagrad.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from alphagrad.train.config import TrainConfig
from alphagrad.train.data import BatchSampler, TokenDataset, bytes_per_token
from alphagrad.train.distributed import GradientReducer, World, check_in_sync, current_world
from alphagrad.train.evaluate import evaluate
from alphagrad.train.mfu import peak_flops
from alphagrad.train.presets import BUILTIN_RECIPE, PRESETS
from alphagrad.train.progress import TrainingStatus
from alphagrad.train.run import RunDir, default_runs_root, make_run_folder
from alphagrad.train.rundb import RunDBWriter
from alphagrad.train.runlock import RunInUse, RunLockLost
from alphagrad.train.sampling import line_starts, sample

Callback = Callable[[dict[str, Any]], None]


# What a resume may change: nothing the model, the data order or the optimizer state depends on.
RESUMABLE = frozenset({
    "max_iters", "learning_rate", "min_lr", "warmup_iters", "lr_decay_iters", "grad_clip",
    "patience", "eval_interval", "eval_iters", "log_interval", "checkpoint_interval",
    "keep_last", "sample_interval", "sample_tokens", "sample_prompt", "num_threads",
    "collective_timeout"})


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the last good checkpoint is kept."""


# TrainConfig field -> model config field, per family; the vocabulary comes from the data
MODEL_FIELDS = {
    "gpt": {f.name: f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"},
    "llama": {"block_size": "block_size", "n_layer": "n_layer", "n_head": "n_head",
              "n_kv_head": "n_kv_head", "n_embd": "n_embd", "n_inner": "intermediate_size",
              "rope_theta": "rope_theta", "layer_norm_eps": "norm_eps",
              "tie_word_embeddings": "tie_embeddings"},
}


def swiglu_width(n_embd: int) -> int:
    """A SwiGLU MLP's hidden width as Llama picks it: 8/3 of the model's, rounded up to 64
    (it has three matrices where GPT's MLP has two of 4x)."""
    return -(-8 * n_embd // 3 // 64) * 64


def model_config(config: TrainConfig, vocab_size: int) -> Any:
    """The model ``config`` describes (a GPTConfig or LlamaConfig): each model field comes from
    its TrainConfig field (``MODEL_FIELDS``), except the vocabulary, which the data decides."""
    values = {ours: getattr(config, theirs) for theirs, ours in MODEL_FIELDS[config.model].items()}
    if config.model == "llama":
        values["n_kv_head"] = config.n_kv_head or config.n_head
        values["intermediate_size"] = config.n_inner or swiglu_width(config.n_embd)
    return family(config.model).config_class(vocab_size=vocab_size, **values)


def settings_of(model: LanguageModel, block_size: int) -> dict[str, Any]:
    """The TrainConfig fields that describe ``model`` (a pretrained one), training on sequences
    of ``block_size`` tokens at most as long as its context."""
    if block_size > model.config.block_size:
        raise ValueError(f"block_size {block_size} is longer than the model's context "
                         f"{model.config.block_size}")
    fields = MODEL_FIELDS[model.kind]
    values = {theirs: getattr(model.config, ours) for theirs, ours in fields.items()}
    return {**values, "model": model.kind, "block_size": block_size}


def check_memory(config: TrainConfig, model: Any, vocab_source: str) -> None:
    """Refuse, before anything is allocated, a run whose weights, gradients and AdamW moments
    and one batch of logits alone exceed the memory this process may hold."""
    with init.empty_weights():
        n_params = family(config.model)(model).num_parameters()
    logits = config.batch_size * config.block_size * model.vocab_size
    need = (4 * n_params + 2 * logits) * np.dtype(config.dtype).itemsize
    have = available_memory()
    if need > have:
        raise ValueError(
            f"train: this model needs at least {need / 2**30:,.1f} GiB ({n_params:,} parameters "
            f"with their gradients and AdamW moments, and logits for batch_size="
            f"{config.batch_size} x block_size={config.block_size} x vocab_size="
            f"{model.vocab_size:,} from {vocab_source}), but only {have / 2**30:,.1f} GiB is "
            "available; lower n_layer, n_embd, block_size or batch_size")


# What a checkpoint's train_state holds: each field's type (the counts also non-negative)
_TRAIN_STATE = {"step": int, "tokens_seen": int, "stale_evals": int, "best_val_loss": float,
                "config": dict, "sampler": dict}


def _resumable(path: Path, ckpt: Checkpoint) -> tuple[TrainConfig, LanguageModel]:
    """The run's config and the model holding the checkpoint's weights, once its train_state
    and weights are checked to fit them: a damaged or crafted file fails here, naming itself,
    before a model is allocated (the model adopts the checkpoint's arrays, no copies)."""
    state = ckpt.train_state
    for name, kind in _TRAIN_STATE.items():
        value = state.get(name)
        if isinstance(value, bool) or not isinstance(value, kind) or (kind is int and value < 0):
            raise CheckpointError(f"{path}: train_state.{name} is {value!r:.60}, not a "
                                  f"{'non-negative int' if kind is int else kind.__name__}")
    try:
        config = TrainConfig.from_dict(state["config"], source="train_state.config")
        # the weights must fit the run's settings, and the model its stored config (which also
        # holds what settings cannot say, e.g. a pretrained Llama's rotary scaling)
        vocab_size = ckpt.model_config.get("vocab_size")
        family(config.model).from_state_dict(model_config(config, vocab_size), ckpt.model_state)
        model = from_state_dict(ckpt.model_kind, ckpt.model_config, ckpt.model_state)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if model.kind != config.model or model.config.block_size < config.block_size:
        raise CheckpointError(f"{path}: holds a {model.kind} model of context "
                              f"{model.config.block_size}, but its run trains a {config.model} "
                              f"on {config.block_size} tokens")
    return config, model


def _load_tokenizer(data_dir: Path):
    from alphagrad.tokenizers import load  # the tokenizers stand beside the training layer

    path = data_dir / "tokenizer.json"
    return load(path) if path.is_file() else None


class Trainer:
    """Trains ``model`` per ``config``; ``fit()`` runs to ``max_iters``, ``train_step()`` one step.

    ``callbacks`` receive every record the run logs (``{"kind": "step" | "eval" | ..., ...}``):
    the hook for progress displays.

    Under an MPI launcher (``world``, by default ``current_world()``) each rank trains on its
    rows of every batch and the gradients are averaged (see ``distributed.py``); ``batch_size``
    stays the global batch, and rank 0 alone writes the run's files.
    """

    def __init__(self, config: TrainConfig, tokenizer: Any = None, callbacks: tuple = (),
                 run: RunDir | None = None, runs_root: str | Path | None = None,
                 world: World | None = None, model: LanguageModel | None = None):
        config = config.resolved().validate()
        if model is None and config.init_from:
            model = from_pretrained(config.init_from)
            config = config.replace(**settings_of(model, config.block_size))
            model.crop_block_size(config.block_size)  # as nanoGPT fine-tunes GPT-2
        self.config = config
        if config.data_dir is None:
            raise ValueError("train: data_dir is not set; prepare data first (alphagrad prepare)")
        data_dir = Path(config.data_dir)
        self.train_data = TokenDataset(data_dir / "train.bin")
        self.val_data = TokenDataset(data_dir / "val.bin")
        if len(self.val_data) < config.block_size + 1:  # else the first evaluation fails
            raise ValueError(f"{self.val_data.path} has {len(self.val_data)} tokens; block_size "
                             f"{config.block_size} needs at least {config.block_size + 1} "
                             "(prepare with a larger --val-fraction, or set a smaller block_size)")
        self.tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(data_dir)
        for dataset in (self.train_data, self.val_data):
            if self.tokenizer is not None:
                dataset.check_tokenizer(self.tokenizer)
        self.bytes_per_token = bytes_per_token(data_dir / "val.bin")
        self.world = world = dataclasses.replace(world or current_world(),
                                                 timeout=config.collective_timeout)
        threads = config.num_threads or (world.default_threads() if world.size > 1 else None)
        if threads:
            set_num_threads(threads)
        keep_freed_memory()  # each step reuses the last step's buffers instead of page-faulting
        if model is None:
            try:  # the settings are checked already: only the data's vocab_size can be wrong
                shape = model_config(config, self.train_data.vocab_size)
            except ValueError as e:
                raise ValueError(f"{self.train_data.path}: {e}") from None
            check_memory(config, shape, str(self.train_data.path))
        elif self.train_data.vocab_size > model.config.vocab_size:
            raise ValueError(f"{self.train_data.path} has vocab_size {self.train_data.vocab_size},"
                             f" more than the model's {model.config.vocab_size}; prepare the data "
                             "with the model's tokenizer")
        manual_seed(config.seed)
        self.model = model if model is not None else family(config.model)(shape)
        if config.dtype == "float64":
            self.model.double()
        if world.size > 1:  # the same initial weights everywhere, but each rank its own dropout
            manual_seed(_rank_seed(config.seed, 0, world.rank))
        self.optimizer = self.model.configure_optimizers(
            config.weight_decay, config.learning_rate, (config.beta1, config.beta2))
        self.reducer = GradientReducer(self._parameters(), world)
        self.sampler = BatchSampler(self.train_data, config.batch_size, config.block_size,
                                    config.seed, rank=world.rank, world_size=world.size)
        self.step, self.tokens_seen, self.best_val_loss, self.stale_evals = 0, 0, math.inf, 0
        self.best_step: int | None = None  # whose checkpoint best.ckpt holds
        if run is None:
            if world.is_main:
                run = RunDir.create(config.out_dir or make_run_folder(runs_root), config)
                run.update_manifest(runs_root=str(Path(runs_root or default_runs_root()).resolve()))
            path = world.broadcast_json(run and str(run.path))
            run = run or RunDir(path, config)  # the other ranks only read rank 0's folder
        self.run = run
        self.callbacks = list(callbacks)
        self.db = None
        if world.is_main:
            # The runs root owns the index: a run kept elsewhere (out_dir) is listed there too.
            self.db = RunDBWriter(runs_root or run.manifest.get("runs_root")
                                  or default_runs_root())
            self.db.register_run(self.run)
        self._stop_signal: int | None = None
        self._step_time, self._steps_this_session = None, 0

    # ------------------------------------------------------------------ resume
    @classmethod
    def resume(cls, path: str | Path, callbacks: tuple = (), max_iters: int | None = None,
               runs_root: str | Path | None = None, overrides: Iterable[str] = ()) -> Trainer:
        """Continue a run from its latest checkpoint (``path``: a run folder or a checkpoint file).

        ``max_iters`` and ``overrides`` (``"key=value"`` strings) may change the settings in
        RESUMABLE; each change is recorded in the run. Everything else comes from the checkpoint.
        Resuming from an older checkpoint moves what came after it aside (``superseded-<time>/``).
        The run is indexed under ``runs_root``, by default the root it was started under.
        """
        path = Path(path)
        run = RunDir.open(path if path.is_dir() else path.parent.parent)
        if current_world().is_main:
            run.lock.acquire()  # RunInUse if another process is training it
            run.remove_leftovers()
        try:
            return cls._resume(run, path, callbacks, max_iters, runs_root, overrides)
        except BaseException:
            run.lock.release()
            raise

    @classmethod
    def _resume(cls, run: RunDir, path: Path, callbacks: tuple, max_iters: int | None,
                runs_root: str | Path | None, overrides: Iterable[str]) -> Trainer:
        ckpt_path = run.checkpoints.latest() if path.is_dir() else path
        if ckpt_path is None:
            raise ValueError(f"{path} has no checkpoint to resume from")
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.train_state is None or ckpt.optimizer is None:
            raise ValueError(f"{ckpt_path} holds weights only (no training state); it cannot resume")
        saved, model = _resumable(ckpt_path, ckpt)
        config = saved.with_overrides(overrides)  # the saved, resolved schedule stays
        if max_iters is not None:
            config = config.replace(max_iters=max_iters)
        changes = {f.name: [getattr(saved, f.name), getattr(config, f.name)]
                   for f in dataclasses.fields(config)
                   if getattr(saved, f.name) != getattr(config, f.name)}
        if refused := sorted(set(changes) - RESUMABLE):
            raise ValueError(f"a resumed run cannot change {', '.join(refused)} (it shapes the "
                             f"model, the data or the optimizer state); it can change: "
                             f"{', '.join(sorted(RESUMABLE))}")
        tokenizer = None
        if ckpt.tokenizer is not None:
            from alphagrad.tokenizers import from_dict

            tokenizer = from_dict(ckpt.tokenizer)
        trainer = cls(config, tokenizer=tokenizer, callbacks=callbacks, run=run,
                      runs_root=runs_root, model=model)
        trainer._restore(ckpt)
        if trainer.world.is_main:
            run.config = trainer.config
            superseded = run.set_aside_after(trainer.step)
            run.restore_best(trainer.best_step)
            run.record_resume(trainer.step, ckpt_path, changes, superseded)
            trainer.db.sync_run(run)  # the index follows the history kept
        return trainer

    def _restore(self, ckpt: Checkpoint) -> None:
        self.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(ckpt.optimizer)
        state = ckpt.train_state
        self.sampler.load_state_dict(state["sampler"])
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        states = state.get("rng_by_rank") or [state["rng"]]
        if len(states) == self.world.size:  # bit-exact: each rank's own dropout generator
            set_rng_state(states[self.world.rank])
        else:  # saved by another number of ranks: fresh, distinct dropout streams
            manual_seed(_rank_seed(self.config.seed, self.step, self.world.rank))
        self.best_val_loss, self.stale_evals = state["best_val_loss"], state["stale_evals"]
        self.best_step = state.get("best_step")  # absent from checkpoints of older versions

    # ------------------------------------------------------------------ one step
    def lr_at(self, step: int) -> float:
        c = self.config
        return warmup_cosine(step, c.learning_rate, c.min_lr, c.warmup_iters, c.lr_decay_iters)

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over ``grad_accum_steps`` micro-batches; returns its record."""
        c, started = self.config, time.perf_counter()
        lr = self.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = 0.0
        for micro in range(c.grad_accum_steps):
            x, y = self.sampler.next()
            self.reducer.sync = micro == c.grad_accum_steps - 1  # reduce the summed gradients once
            _, loss = self.model(from_numpy(x), y)
            (loss / c.grad_accum_steps if c.grad_accum_steps > 1 else loss).backward()
            total += loss.item()
        loss = self.reducer.wait(total / c.grad_accum_steps)
        params = self._parameters()
        grad_norm = float(clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else math.inf))
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            raise TrainingDiverged(f"step {self.step}: loss {loss}, gradient norm {grad_norm}; "
                                   f"training stopped; {self._after_divergence()}")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if c.checksum_interval and self.step % c.checksum_interval == 0:
            check_in_sync(params, self.world, self.step)
        tokens = c.batch_size * c.block_size * c.grad_accum_steps
        self.tokens_seen += tokens
        seconds = time.perf_counter() - started
        self._steps_this_session += 1
        if self._steps_this_session > 1:  # the first step compiles kernels: it predicts nothing
            self._step_time = seconds if self._step_time is None else \
                0.9 * self._step_time + 0.1 * seconds
        eta = None if self._step_time is None else self._step_time * (c.max_iters - self.step)
        flops = self.model.flops_per_token(c.block_size) * tokens / seconds / self.world.size
        return {"kind": "step", "step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                "tokens_per_sec": tokens / seconds, "mfu": flops / peak_flops(get_num_threads()),
                "eta_seconds": eta, "seconds": seconds}

    def _parameters(self) -> list:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _after_divergence(self) -> str:
        """What to do next, as settings a resume (or a new run) accepts."""
        c = self.config
        lower = [f"learning_rate={c.learning_rate / 2:g}"]
        if c.min_lr > c.learning_rate / 2:
            lower.append(f"min_lr={c.min_lr / 2:g}")
        sets = " ".join(f"--set {item}" for item in lower)
        latest = self.run.checkpoints.latest()
        if latest is None:
            return (f"no checkpoint was saved yet (the first was due at step "
                    f"{min(c.eval_interval, c.checkpoint_interval)}); start again with a lower "
                    f"learning rate ({sets})")
        return (f"the last good checkpoint is {latest.name}; resume from it with a lower learning "
                f"rate: alphagrad train --resume {self.run.path} {sets}")

    # ------------------------------------------------------------------ evaluation, samples, checkpoints
    def evaluate(self) -> dict[str, Any]:
        c = self.config
        val = evaluate(self.model, self.val_data, c.batch_size, c.block_size, c.eval_iters,
                       self.bytes_per_token, world=self.world)
        train = evaluate(self.model, self.train_data, c.batch_size, c.block_size, c.eval_iters,
                         world=self.world)
        return {"kind": "eval", "step": self.step, "train_loss": train["loss"],
                "val_loss": val["loss"], "val_perplexity": val["perplexity"],
                **({"val_bits_per_byte": val["bits_per_byte"]} if "bits_per_byte" in val else {})}

    def sample(self, prompts: tuple[str, ...] | None = None, max_new_tokens: int | None = None,
               seed: int = 0) -> list[dict[str, Any]]:
        """Seeded continuations of ``prompts`` (needs the tokenizer); leaves training RNG untouched.

        Without ``prompts``: the ``sample_prompt`` setting; else on a preset's built-in corpus
        its prompts; else the starts of two validation lines, so they fit the user's corpus.
        """
        if self.tokenizer is None:
            return []
        if prompts is None:
            prompts = self.default_prompts()
        n = max_new_tokens or self.config.sample_tokens
        loaded = (self.model, self.tokenizer, None)
        return [{"step": self.step, "prompt": prompt, "seed": seed + i,
                 "text": sample(loaded, prompt, n, temperature=0.8, top_k=40, seed=seed + i)}
                for i, prompt in enumerate(prompts)]

    def default_prompts(self) -> tuple[str, ...]:
        c = self.config
        preset = PRESETS.get(c.preset or "")
        if c.sample_prompt is not None:
            return (c.sample_prompt,)
        if preset and (Path(c.data_dir) / BUILTIN_RECIPE).is_file():
            return preset.prompts
        return line_starts(self.val_data, self.tokenizer, 2) or ("\n",)

    def save_checkpoint(self, is_best: bool = False, metrics: dict | None = None) -> Path:
        """Write a checkpoint (rank 0 does; every rank calls this at the same step)."""
        rng = self.world.allgather_json(get_rng_state())
        if not self.world.is_main:
            return self.run.checkpoints.path_for(self.step)
        self.run.lock.check()
        train_state = {
            "step": self.step, "tokens_seen": self.tokens_seen, "best_val_loss": self.best_val_loss,
            "stale_evals": self.stale_evals, "best_step": self.best_step,
            "config": self.config.to_dict(),
            "rng": rng[0], "sampler": self.sampler.state_dict(),
            **({"rng_by_rank": rng} if self.world.size > 1 else {}),
        }
        path = self.run.checkpoints.save(
            self.step, is_best=is_best, model_kind=self.model.kind,
            model_config=dataclasses.asdict(self.model.config), model_state=self.model.state_dict(),
            tied=self.model.tied_weights(), optimizer=self.optimizer.state_dict(), train_state=train_state,
            tokenizer=self.tokenizer.to_dict() if self.tokenizer is not None else None,
            metrics=metrics or {})
        val_loss = (metrics or {}).get("val_loss")
        self.db.add_checkpoint(self.run, self.step, str(path), is_best=is_best, val_loss=val_loss)
        self._emit({"kind": "checkpoint", "step": self.step, "path": str(path), "is_best": is_best})
        return path

    # ------------------------------------------------------------------ the loop
    def _emit(self, record: dict[str, Any], log: bool = False) -> None:
        if log and self.world.is_main:
            self.run.lock.check()
            self.run.log_metrics(record)
            self.db.log_metrics(self.run, [record])
        for callback in self.callbacks:
            callback(record)

    def _evaluate_and_checkpoint(self) -> bool:
        """Evaluate, checkpoint (marking the best) and report whether patience ran out."""
        record = self.evaluate()
        self._emit(record, log=True)
        improved = record["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.stale_evals = record["val_loss"], 0
            self.best_step = self.step
        else:
            self.stale_evals += 1
        self.save_checkpoint(is_best=improved, metrics=record)
        patience = self.config.patience
        return patience is not None and self.stale_evals >= patience

    def _on_signal(self, signum, frame) -> None:
        self._stop_signal = signum

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped ``fit`` (SIGINT or SIGTERM), or None."""
        return self._stop_signal

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train to ``max_iters`` (or early stop, or a signal); returns the final metrics.

        ``progress`` shows a live status line (step, loss, learning rate, tokens/s, MFU, ETA)
        rewritten in place on a terminal or in a notebook, plain lines every ``log_interval``
        steps elsewhere, and a line per evaluation and checkpoint; ``progress=False`` is silent.
        A ``TrainingStatus`` among the callbacks (as the command line adds) takes its place.
        SIGINT (Ctrl-C) and SIGTERM finish the current step, save a checkpoint and stop.
        """
        c = self.config
        shown = [cb for cb in self.callbacks if isinstance(cb, TrainingStatus)]
        display = TrainingStatus(c.max_iters, c.log_interval) \
            if progress and not shown and self.world.is_main else None
        if display is not None:
            self.callbacks.append(display)
        for status in shown or ([display] if display is not None else []):
            status.starting(self.step)  # the first step may wait on compiling the kernels
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        if self.world.is_main:
            self.run.lock.acquire()  # held from construction; taken again if fit() runs twice
            self.run.update_manifest(status="running", num_threads=get_num_threads(),
                                     parameters=self.model.num_parameters(),
                                     world_size=self.world.size, hosts=list(self.world.hosts))
        status, started = "completed", time.perf_counter()
        try:
            self.model.train()
            while self.step < c.max_iters:
                record = self.train_step()
                if self.step % c.log_interval == 0 or self.step == 1:
                    self._emit(record, log=True)
                else:
                    self._emit(record)
                if c.sample_interval and self.step % c.sample_interval == 0 and self.world.is_main:
                    self.run.log_samples(self.sample())
                if self.step % c.eval_interval == 0 or self.step == c.max_iters:
                    if self._evaluate_and_checkpoint():
                        status = "early-stopped"
                        break
                elif self.step % c.checkpoint_interval == 0:
                    self.save_checkpoint()
                if self.world.any(self._stop_signal is not None):  # every rank stops together
                    self.save_checkpoint()
                    status = "interrupted"
                    break
            if status == "completed" and self.world.is_main:
                self.run.log_samples(self.sample())
            return self._finish(status, started)
        except BaseException as error:
            self._record_failure(error, started)
            raise
        finally:
            for s, handler in handlers.items():
                signal.signal(s, handler)
            self.run.lock.release()
            if display is not None:
                display.close()
                self.callbacks.remove(display)

    def _record_failure(self, error: BaseException, started: float) -> None:
        """Leave the truth behind when ``fit`` stops on an error: status and reason."""
        if not self.world.is_main:
            return
        if isinstance(error, RunLockLost):
            self.run.lock.release()
            try:  # the folder is ours to write to only if nobody else took it meanwhile
                self.run.lock.acquire()
            except (RunInUse, OSError):
                return
        status = ("diverged" if isinstance(error, TrainingDiverged) else
                  "interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        reason = f"{type(error).__name__}: {error}".strip().rstrip(":")
        with contextlib.suppress(Exception):  # the error itself matters more than its record
            self._finish(status, started, reason=reason)

    def _finish(self, status: str, started: float, reason: str | None = None) -> dict[str, Any]:
        final = {"step": self.step, "tokens_seen": self.tokens_seen,
                 "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
                 "status": status, **({"reason": reason} if reason else {})}
        if not self.world.is_main:
            return final
        manifest = self.run.finish(status, final_metrics=final,
                                   train_seconds=round(time.perf_counter() - started, 3))
        self.db.finish_run(self.run, status, final, finished=manifest["finished"])
        return final


def _rank_seed(seed: int, step: int, rank: int) -> int:
    """A dropout seed of its own for each rank (and each resume point)."""
    return (seed * 1_000_003 + step * 7919 + rank + 1) % 2**63


def train(config: TrainConfig, **kwargs: Any) -> Trainer:
    """Build a ``Trainer`` for ``config``, run it to the end and return it."""
    trainer = Trainer(config, **kwargs)
    trainer.fit()
    return trainer
