"""``pokedex-host train student``: a KPU-family student, checkpointed every epoch, resumable.

Checkpoints (all load with ``torch.load(..., weights_only=True)``):
``OUT/last.pt`` (model, optimiser, schedule, epoch, metrics, config, data hash, RNG state) and
``OUT/best.pt`` (a pokedex-k210 checkpoint that ``build-kmodel`` and ``eval`` take), written
atomically; ``OUT/metrics.csv`` gets one line per epoch.
"""

from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from ..models import create_model
from ..models.checkpoint import save_checkpoint
from .data import augment, data_hash, list_split, load_split, to_input


@dataclass
class StudentConfig:
    data: str
    out: str
    family: str = "kpu_mobilenet_v1"
    width: float = 0.75
    input: int = 128
    classes: int = 1025
    epochs: int = 16
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    patience: int = 0  # 0 = no early stopping
    seed: int = 0
    threads: int = 0
    camera_aug_ramp: int = -1  # -1: off; else camera-realistic frames, strength ramped 0 -> 1 over N epochs
    workers: int = 0  # DataLoader processes for camera augmentation
    teacher: str | None = None  # distil from this model's softened outputs (cached once)
    kd_temperature: float = 4.0
    kd_alpha: float = 0.7  # weight of the distillation term; 1 - alpha goes to the labels
    groups: str | None = None  # a grouping file: train a coarse model that predicts the group
    tensorboard: str | None = None  # write scalars for TensorBoard here (off by default)


def warmup_cosine(step: int, total: int, warm: int) -> float:
    """The learning-rate factor at ``step`` of ``total``: linear warm-up over ``warm`` steps, then cosine to 0."""
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def _lr_at(cfg: StudentConfig, step: int, steps_per_epoch: int) -> float:
    return cfg.lr * warmup_cosine(step, cfg.epochs * steps_per_epoch, max(1, int(cfg.warmup_epochs * steps_per_epoch)))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int, batch: int = 256,
             device: torch.device | None = None) -> dict:
    """Loss, top-1 and top-5 % of ``model`` on uint8 images ``x`` (on ``device`` when given)."""
    model.eval()
    loss, top1, top5 = 0.0, 0, 0
    for i in range(0, len(y), batch):
        xb = to_input(x[i : i + batch], size)
        if device is not None:
            xb = xb.to(device)
        out = model(xb.contiguous(memory_format=torch.channels_last)).float().cpu()
        yb = y[i : i + batch]
        loss += float(nn.functional.cross_entropy(out, yb, reduction="sum"))
        top = out.topk(min(5, out.shape[1]), dim=1).indices
        top1 += int((top[:, 0] == yb).sum())
        top5 += int((top == yb[:, None]).any(1).sum())
    n = max(1, len(y))
    return {"val_loss": loss / n, "top1": 100 * top1 / n, "top5": 100 * top5 / n}


def _distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by torchrun (gloo on CPU)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def train_student(cfg: StudentConfig, *, resume: bool = False, log=print) -> dict:
    """Train (or resume) a student. Under ``torchrun`` each process takes its share of every
    batch (DDP); rank 0 evaluates and writes checkpoints."""
    rank, world = _distributed()
    if rank != 0:
        log = lambda m: None  # noqa: E731
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = Path(cfg.data)
    train_items = list_split(data / "train")
    dhash = data_hash(train_items)
    last = out / "last.pt"
    state = None
    if resume and last.exists():
        try:
            state = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as e:
            raise PokedexError(f"{last} is corrupt ({type(e).__name__}); cannot resume",
                               "delete it to start over, or restore it from a backup") from e
        saved = StudentConfig(**state["config"])
        if (saved.family, saved.width, saved.input, saved.classes) != (cfg.family, cfg.width, cfg.input, cfg.classes):
            raise PokedexError(f"{last} is a {saved.family} w{saved.width} @{saved.input} x{saved.classes} run; "
                               f"asked for {cfg.family} w{cfg.width} @{cfg.input} x{cfg.classes}",
                               "use the same model options to resume, or another --out")
        if state["data_hash"] != dhash:
            log(f"warning: the training split changed since {last} was written (data hash {state['data_hash']} -> {dhash})")
    elif resume:
        log(f"no {last} to resume from; starting a new run")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    store = int(round(cfg.input * 1.15))
    t0 = time.time()
    train = load_split(data / "train", store)
    val = load_split(data / "validation", store)
    if cfg.groups:
        from .groups import load_groups

        g = load_groups(Path(cfg.groups))
        n_groups = max(g.values()) + 1
        if cfg.classes != n_groups:
            raise PokedexError(f"{cfg.groups} has {n_groups} groups but --classes is {cfg.classes}",
                               f"pass --classes {n_groups} with --groups")
        lut = torch.tensor([g.get(d, -1) for d in range(1, 1026)])
        train.y, val.y = lut[train.y], lut[val.y]
        if (train.y < 0).any() or (val.y < 0).any():
            raise PokedexError(f"{cfg.groups} does not place every species of the data in a group")
    log(f"loaded {len(train)} train / {len(val)} validation images at {store}px in {time.time() - t0:.0f} s")
    missing = sorted(set(train.y.tolist()) - set(val.y.tolist()))
    if missing:
        log(f"warning: {len(missing)} species have training images but none in validation "
            f"(e.g. #{missing[0] + 1:04d}); validation accuracy says nothing about them")
    soft = teacher_logits(cfg, train, dhash, out, log) if cfg.teacher else None
    model = create_model(cfg.family, width=cfg.width, input=cfg.input, classes=cfg.classes)
    model = model.to(memory_format=torch.channels_last)
    if state is not None:
        model.load_state_dict(state["model"])
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
        log(f"DDP: {world} processes, {cfg.batch} images each per step")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    start, best, best_epoch, history = 0, -1.0, -1, []
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start, best, best_epoch, history = state["epoch"] + 1, state["best_top1"], state["best_epoch"], state["history"]
        log(f"resuming {out} at epoch {start + 1} of {cfg.epochs} (best top-1 {best:.2f} % at epoch {best_epoch + 1})")
    # a last partial batch is kept only if every process gets at least 2 images of it (batch norm
    # needs two, and DDP needs every process to take the same number of steps)
    per_step = cfg.batch * world
    steps = max(1, len(train) // per_step + (1 if len(train) % per_step >= 2 * world else 0))
    tb = None
    if cfg.tensorboard and rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(cfg.tensorboard)
    for epoch in range(start, cfg.epochs):
        stop = bool(cfg.patience and best_epoch >= 0 and epoch - best_epoch > cfg.patience)
        if world > 1:  # rank 0 alone knows the validation history: share its decision
            import torch.distributed as dist

            flag = torch.tensor([1 if stop else 0])
            dist.broadcast(flag, src=0)
            stop = bool(flag.item())
        if stop:
            log(f"early stop: no better top-1 for {cfg.patience} epochs")
            break
        model.train()
        te, total, seen = time.time(), 0.0, 0
        from ..dataset.progress import Progress

        bar = Progress(f"epoch {epoch + 1}/{cfg.epochs}", steps) if rank == 0 else None
        perm = torch.randperm(len(train), generator=gen)
        mine = torch.cat([perm[s * cfg.batch * world:(s + 1) * cfg.batch * world][rank::world] for s in range(steps)])
        batches = _camera_batches(train, mine, cfg, epoch) if cfg.camera_aug_ramp >= 0 else None
        for s in range(steps):
            idx = perm[s * cfg.batch * world:(s + 1) * cfg.batch * world][rank::world]
            for g in opt.param_groups:
                g["lr"] = _lr_at(cfg, epoch * steps + s, steps)
            if batches is not None:
                xb = next(batches)
            else:
                xb = augment(train.x[idx], cfg.input, gen)
            xb = xb.contiguous(memory_format=torch.channels_last)
            logits = net(xb)
            loss = crit(logits, train.y[idx])
            if soft is not None:
                t = cfg.kd_temperature
                kd = nn.functional.kl_div(nn.functional.log_softmax(logits / t, dim=1),
                                          nn.functional.softmax(soft[idx].float() / t, dim=1), reduction="batchmean")
                loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * t * t * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.step()
        if bar is not None:
            bar.done()
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
            if rank != 0:
                continue
        m = {"epoch": epoch + 1, "train_loss": total / seen, **evaluate(model, val.x, val.y, cfg.input),
             "lr": opt.param_groups[0]["lr"], "seconds": time.time() - te, "images_per_s": seen / (time.time() - te)}
        history.append(m)
        if tb is not None:
            for k in ("train_loss", "val_loss", "top1", "top5", "lr", "images_per_s"):
                tb.add_scalar(k, m[k], epoch + 1)
            tb.flush()
        improved = m["top1"] > best
        if improved:
            best, best_epoch = m["top1"], epoch
            save_checkpoint(out / "best.pt", model, cfg.family, list(range(1, cfg.classes + 1)),
                            {"epoch": epoch + 1, "metrics": m, "config": asdict(cfg), "data_hash": dhash})
        buf = io.BytesIO()
        torch.save({"config": asdict(cfg), "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "best_top1": best,
                    "best_epoch": best_epoch, "history": history, "data_hash": dhash}, buf)
        try:
            atomic_write_bytes(last, buf.getvalue())
            write_metrics(out / "metrics.csv", history)
        except OSError as e:
            raise PokedexError(f"could not write {last}: {e.strerror or e}; the previous checkpoint is intact",
                               "free some disk space, then run the same command with --resume") from e
        log(f"epoch {epoch + 1}/{cfg.epochs}: loss {m['train_loss']:.3f}, val top-1 {m['top1']:.2f} % top-5 "
            f"{m['top5']:.2f} % ({m['seconds']:.0f} s, {m['images_per_s']:.0f} img/s){' *' if improved else ''}")
    return {"best_top1": best, "best_epoch": best_epoch + 1, "history": history}


def teacher_logits(cfg: StudentConfig, train, dhash: str, out: Path, log) -> torch.Tensor:
    """The teacher's logits for every training image, computed once and cached in OUT."""
    from ..fsutil import sha256_file

    tpath = Path(cfg.teacher)
    key = f"{sha256_file(tpath)[:16]}-{dhash}"
    cache = out / "teacher_logits.pt"
    if cache.exists():
        c = torch.load(cache, map_location="cpu", weights_only=True)
        if c.get("key") == key:
            log(f"teacher logits from the cache ({cache})")
            return c["logits"]
    if tpath.suffix.lower() in (".pt", ".pth"):
        from ..compile.export import load_torch_model

        teacher, size, classes, _ = load_torch_model(tpath, log)
    else:
        raise PokedexError(f"teacher {tpath}: pass a .pt checkpoint (the project's or an ultralytics -cls/-detect one)")
    if len(classes) != cfg.classes:
        raise PokedexError(f"teacher {tpath} has {len(classes)} classes, the student {cfg.classes}",
                           "distil between models of the same class list")
    teacher.eval()
    t0 = time.time()
    outs = []
    with torch.no_grad():
        for i in range(0, len(train), 128):
            outs.append(teacher(to_input(train.x[i:i + 128], size)).float())
    logits = torch.cat(outs).half()
    buf = io.BytesIO()
    torch.save({"key": key, "logits": logits}, buf)
    atomic_write_bytes(cache, buf.getvalue())
    log(f"teacher logits for {len(train)} images in {time.time() - t0:.0f} s, cached in {cache}")
    return logits


class _CameraFrames(torch.utils.data.Dataset):
    """Camera-realistic frames of the training images (dataset/augment.py), seeded per epoch."""

    def __init__(self, x: torch.Tensor, order: torch.Tensor, size: int, strength: float, seed: int):
        self.x, self.order, self.size, self.strength, self.seed = x, order, size, strength, seed

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, i: int) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        from ..dataset.augment import camera_frame

        j = int(self.order[i])
        im = Image.fromarray(self.x[j].permute(1, 2, 0).numpy())
        rng = np.random.default_rng([self.seed, j])
        out = camera_frame(im, rng, self.strength, self.size)
        return torch.from_numpy(np.asarray(out).copy()).permute(2, 0, 1).float() / 255.0


def _camera_batches(train, perm, cfg: StudentConfig, epoch: int):
    from ..dataset.augment import curriculum

    strength = curriculum(epoch, cfg.camera_aug_ramp)
    ds = _CameraFrames(train.x, perm, cfg.input, strength, cfg.seed * 100003 + epoch)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch, shuffle=False, num_workers=cfg.workers)
    return iter(loader)


def write_metrics(path: Path, history: list[dict]) -> None:
    """metrics.csv: one row per epoch, written atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_bytes(path, buf.getvalue().encode())
