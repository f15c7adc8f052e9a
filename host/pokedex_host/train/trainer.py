"""One training loop for every stage: the teacher fine-tune, the distillation and the plain student.

:class:`Trainer` owns what a stage must not copy: the epoch loop, the learning-rate schedule
(linear warm-up, then cosine to 0), resume from ``OUT/last.pt``, validation after every epoch,
``OUT/best.pt`` (a project checkpoint, :mod:`..models.checkpoint`), ``OUT/metrics.csv``, the
progress line, early stopping (``patience``) and, under DDP, rank 0 alone validating and writing.
Every file is written atomically (:func:`..fsutil.atomic_write_bytes`).

A :class:`Stage` supplies the model, its optimiser and the augmentation generator, one training
step (batch and loss), the validation and the score best.pt is chosen by.

``OUT/last.pt`` has one schema (:data:`LAST_FORMAT`; loads with ``torch.load(..., weights_only=True)``)::

    {"format": "pokedex-k210/last", "version": 1, "stage": "teacher" | "student" | ...,
     "epoch": last finished epoch (0-based; -1: only the start validated), "model": state dict,
     "optimizer": state dict, "scheduler": {"name", "warmup_steps", "total_steps", "step"},
     "best": best score, "best_epoch": its metrics.csv epoch (None: none yet), "history": metric rows,
     "generator": the stage's torch.Generator state, "torch_rng": torch's global RNG state,
     "cuda_rng": the CUDA generators' states (None without CUDA),
     "meta": what a resume must match (the stage's configuration),
     "aux": state dict of the stage's training-only module (the distillation's feature map), or None}

The generator and RNG states make a resumed run bit-identical to one that was never interrupted
(on a GPU, as far as its kernels are deterministic).
The last.pt files of the two loops this one replaced (``train student``'s and the recipe's) are
converted when they are read.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import torch
from torch import nn

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from ..models.checkpoint import save_checkpoint

LAST_FORMAT = "pokedex-k210/last"
LAST_VERSION = 1


def warmup_cosine(step: int, total: int, warm: int) -> float:
    """The learning-rate factor at ``step`` of ``total``: linear warm-up over ``warm`` steps, then cosine to 0."""
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def write_metrics(path: Path, history: list[dict]) -> None:
    """metrics.csv: one row per epoch (the columns of every row, in order of appearance), written atomically."""
    fields: dict[str, None] = {}
    for row in history:
        fields.update(dict.fromkeys(row))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), restval="")
    w.writeheader()
    w.writerows(history)
    atomic_write_bytes(path, buf.getvalue().encode())


def save_torch(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class Stage:
    """What a stage supplies to :class:`Trainer`. Set the attributes, override :meth:`step` and
    :meth:`validate`; the rest has defaults."""

    name: str = "stage"  # saved in last.pt
    label: str = ""  # log prefix: "teacher" gives "teacher epoch 2/4: ..."
    family: str  # the model family, for best.pt
    classes: list[int]  # best.pt's class list
    model: nn.Module  # the weights trained and saved (not a DDP wrapper)
    aux: nn.Module | None = None  # trained beside the model and kept in last.pt, never in best.pt
    optimizer: torch.optim.Optimizer  # its groups may carry "base_lr" (default: their lr)
    generator: torch.Generator  # what the batches are drawn with
    meta: dict  # what a resume must match; saved in last.pt
    steps: int  # optimiser steps per epoch
    warmup_epochs: float = 0.0
    start_counts: bool = False  # a continued stage: its start is validated and kept unless an epoch beats it

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()

    def step(self, epoch: int, s: int) -> tuple[float, int]:
        """One optimiser step; returns (loss, images)."""
        raise NotImplementedError

    def validate(self) -> dict:
        raise NotImplementedError

    def score(self, m: dict) -> float:
        """What best.pt is chosen by (higher is better)."""
        return m["top1"]

    def summary(self, m: dict) -> str:
        return f"val top-1 {m['top1']:.2f} % top-5 {m['top5']:.2f} %"

    def best_meta(self) -> dict:
        """Keys added to best.pt's meta beside the epoch and its metrics."""
        return {"meta": self.meta}

    def check_resume(self, state: dict, path: Path, log) -> None:
        """Refuse (PokedexError) a last.pt this stage cannot continue."""
        if state.get("meta") != self.meta:
            raise PokedexError(
                f"{path} was written by another configuration ({state.get('meta')})",
                f"use the same options to resume, or delete {path.parent}",
            )


def _convert(obj: dict, path: Path) -> dict:
    """A last.pt of the two earlier loops in this schema; anything else is refused."""
    base = {"format": LAST_FORMAT, "version": LAST_VERSION, "scheduler": None, "cuda_rng": None}
    if "best_top1" in obj and "config" in obj:  # train student, until December
        be = obj["best_epoch"]
        return {
            **base,
            "stage": "student",
            "epoch": obj["epoch"],
            "model": obj["model"],
            "optimizer": obj["optimizer"],
            "best": obj["best_top1"],
            "best_epoch": be + 1 if be >= 0 else None,
            "history": obj["history"],
            "generator": obj["generator"],
            "torch_rng": obj["torch_rng"],
            "meta": {"config": obj["config"], "data_hash": obj["data_hash"]},
        }
    if {"model", "optimizer", "best", "history", "meta", "torch_rng"} <= set(obj):  # the recipe, until December
        return {
            **base,
            "stage": (obj["meta"] or {}).get("stage"),
            "epoch": obj["epoch"],
            "model": obj["model"],
            "optimizer": obj["optimizer"],
            "best": obj["best"],
            "best_epoch": None,
            "history": obj["history"],
            "generator": None,
            "torch_rng": obj["torch_rng"],
            "meta": obj["meta"],
        }
    raise PokedexError(
        f"{path} is not a last.pt this toolkit wrote (keys: {', '.join(sorted(obj)[:8])})",
        f"delete {path} to start this stage over",
    )


def read_last(path: Path) -> dict:
    """``path`` (a last.pt) in the current schema, converted from the earlier ones."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PokedexError(
            f"{path} is corrupt ({type(e).__name__}); cannot resume",
            f"delete {path} to start this stage over, or restore it from a backup",
        ) from e
    if not isinstance(obj, dict):
        raise PokedexError(f"{path} is not a last.pt this toolkit wrote", f"delete {path} to start this stage over")
    if obj.get("format") == LAST_FORMAT:
        if obj.get("version") != LAST_VERSION:
            raise PokedexError(
                f"{path} is last.pt version {obj.get('version')}; this toolkit reads {LAST_VERSION}",
                f"resume with the toolkit that wrote it, or delete {path}",
            )
        return obj
    return _convert(obj, path)


class Trainer:
    """Runs ``stage`` for ``epochs`` epochs into ``out``. ``resume``: continue from OUT/last.pt
    when it is there (otherwise a new run replaces it). Under DDP (``world`` > 1) every rank trains;
    rank 0 validates, writes and decides early stops."""

    def __init__(
        self,
        stage: Stage,
        out: Path,
        epochs: int,
        *,
        resume: bool = True,
        patience: int = 0,
        rank: int = 0,
        world: int = 1,
        log=print,
        callbacks=(),
    ):
        self.stage, self.out, self.epochs = stage, Path(out), epochs
        self.resume, self.patience, self.rank, self.world = resume, patience, rank, world
        self.log, self.callbacks = log, list(callbacks)  # callbacks: fn(metrics row) after each validated epoch
        self.last, self.best_pt = self.out / "last.pt", self.out / "best.pt"
        self.best, self.best_epoch, self.history, self.start = -1.0, None, [], 0
        for g in stage.optimizer.param_groups:
            g.setdefault("base_lr", g["lr"])
        self.total = epochs * stage.steps
        self.warm = max(1, int(stage.warmup_epochs * stage.steps))

    @property
    def main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------------------ schedule
    def set_lr(self, step: int) -> None:
        f = warmup_cosine(step, self.total, self.warm)
        for g in self.stage.optimizer.param_groups:
            g["lr"] = g["base_lr"] * f

    # ----------------------------------------------------------------------------- checkpoints
    def state(self, epoch: int) -> dict:
        st = self.stage
        return {
            "format": LAST_FORMAT,
            "version": LAST_VERSION,
            "stage": st.name,
            "epoch": epoch,
            "model": st.model.state_dict(),
            "optimizer": st.optimizer.state_dict(),
            "scheduler": {
                "name": "warmup_cosine",
                "warmup_steps": self.warm,
                "total_steps": self.total,
                "step": (epoch + 1) * st.steps,
            },
            "best": self.best,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "generator": st.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "meta": st.meta,
            "aux": st.aux.state_dict() if st.aux is not None else None,
        }

    def save_last(self, state: dict) -> None:
        try:
            save_torch(self.last, state)
            write_metrics(self.out / "metrics.csv", self.history)
        except OSError as e:
            raise PokedexError(
                f"could not write {self.last}: {e.strerror or e}; the previous checkpoint is intact",
                "free some disk space, then run the same command again (with --resume where the command has it)",
            ) from e

    def save_best(self, m: dict) -> None:
        st = self.stage
        save_checkpoint(
            self.best_pt, st.model, st.family, st.classes, {"epoch": m["epoch"], "metrics": m, **st.best_meta()}
        )

    def check_resume(self) -> dict | None:
        if not (self.resume and self.last.exists()):
            return None
        state = read_last(self.last)
        self.stage.check_resume(state, self.last, self.log)
        self.best, self.best_epoch, self.history = state["best"], state["best_epoch"], list(state["history"])
        if self.best_epoch is None:  # a converted recipe last.pt: the epoch that scored best
            self.best_epoch = next((h["epoch"] for h in self.history if self.stage.score(h) == self.best), None)
        return state

    def resume_training(self, state: dict) -> None:
        st = self.stage
        st.model.load_state_dict(state["model"])
        if st.aux is not None:
            if state.get("aux") is None:
                raise PokedexError(
                    f"{self.last} has no state for this stage's {type(st.aux).__name__}",
                    f"resume with the options that wrote it, or delete {self.out} to start this stage over",
                )
            st.aux.load_state_dict(state["aux"])
        bases = [g["base_lr"] for g in st.optimizer.param_groups]
        st.optimizer.load_state_dict(state["optimizer"])
        for g, b in zip(st.optimizer.param_groups, bases):  # the schedule follows today's options
            g["base_lr"] = b
        if state["generator"] is not None:
            st.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        cuda = state.get("cuda_rng")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        self.start = state["epoch"] + 1
        if self.start < self.epochs:
            best = f", best {self.best:.2f} at epoch {self.best_epoch}" if self.best_epoch is not None else ""
            self.log(f"{self._prefix()}resuming at epoch {self.start + 1} of {self.epochs} ({self.out}{best})")

    # ---------------------------------------------------------------------------------- loop
    def _prefix(self) -> str:
        return f"{self.stage.label}: " if self.stage.label else ""

    def validate_start(self, state: dict | None) -> dict | None:
        """A continued stage: its start (the model as it comes in) is validated as epoch 0 and is
        best.pt until an epoch beats it. A run resumed from before this rule has its start
        validated then (the model still holds the start when this is called)."""
        st = self.stage
        m = {"epoch": 0, "train_loss": float("nan"), "images_per_s": 0.0, "seconds": 0.0, "lr": 0.0, **st.validate()}
        self.history = [m] + self.history
        kept = st.score(m) >= self.best  # an epoch must beat the start, not tie it
        if kept:
            self.best, self.best_epoch = st.score(m), 0
            self.save_best(m)
        label = f"{st.label} " if st.label else ""
        self.log(f"{label}epoch 0 (its start): {st.summary(m)}{' *' if kept else ''}")
        if state is not None:
            state = {**state, "best": self.best, "best_epoch": self.best_epoch, "history": self.history}
            self.save_last(state)
        else:  # a resume (or a stage of 0 epochs run again) need not validate the start again
            self.save_last(self.state(-1))
        return state

    def _stop(self, epoch: int) -> bool:
        stop = bool(self.patience and self.best_epoch is not None and epoch + 1 - self.best_epoch > self.patience)
        if self.world > 1:  # rank 0 alone knows the validation history: share its decision
            import torch.distributed as dist

            flag = torch.tensor([1 if stop else 0])
            dist.broadcast(flag, src=0)
            stop = bool(flag.item())
        if stop:
            self.log(f"{self._prefix()}early stop: no better validation score for {self.patience} epochs")
        return stop

    def train_epoch(self, epoch: int) -> dict:
        from ..dataset.progress import Progress

        st = self.stage
        st.begin_epoch(epoch)
        label = f"{st.label} " if st.label else ""
        bar = Progress(f"{label}epoch {epoch + 1}/{self.epochs}", st.steps, unit=" steps") if self.main else None
        t0, loss_sum, seen = time.time(), 0.0, 0
        for s in range(st.steps):
            self.set_lr(epoch * st.steps + s)
            loss, n = st.step(epoch, s)
            loss_sum, seen = loss_sum + loss * n, seen + n
            if bar is not None:
                bar.step(1, f"loss {loss_sum / seen:.3f}, {seen / (time.time() - t0):.0f} img/s")
        if bar is not None:
            bar.done()
        train_s = time.time() - t0
        return {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, seen),
            "images_per_s": seen / max(train_s, 1e-9),
            "seconds": train_s,
            "lr": st.optimizer.param_groups[0]["lr"],
        }

    def fit(self) -> dict:
        """Train (or resume); returns {"best", "best_epoch", "history"}."""
        st = self.stage
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        state = self.check_resume()
        if st.start_counts and self.main and not any(h["epoch"] == 0 for h in self.history):
            state = self.validate_start(state)
        if state is not None:
            self.resume_training(state)
        for epoch in range(self.start, self.epochs):
            if self._stop(epoch):
                break
            m = self.train_epoch(epoch)
            if self.world > 1:
                import torch.distributed as dist

                dist.barrier()
                if not self.main:
                    continue
            m.update(st.validate())
            self.history.append(m)
            improved = st.score(m) > self.best
            if improved:
                self.best, self.best_epoch = st.score(m), m["epoch"]
                self.save_best(m)
            self.save_last(self.state(epoch))
            for cb in self.callbacks:
                cb(m)
            label = f"{st.label} " if st.label else ""
            self.log(
                f"{label}epoch {epoch + 1}/{self.epochs}: loss {m['train_loss']:.3f}, {st.summary(m)} "
                f"({m['seconds']:.0f} s, {m['images_per_s']:.0f} img/s){' *' if improved else ''}"
            )
        return {"best": self.best, "best_epoch": self.best_epoch, "history": self.history}
