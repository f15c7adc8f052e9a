"""``pokedex-host train student`` and ``distill``: a KPU-family student, checkpointed every epoch, resumable.

:class:`StudentStage` runs in :class:`.trainer.Trainer`, which writes ``OUT/last.pt`` (the
trainer's one schema), ``OUT/best.pt`` (a pokedex-k210 checkpoint that ``build-kmodel`` and
``eval`` take) and ``OUT/metrics.csv``, all atomically. With a teacher (``distill``), the
teacher's logits for every training image are computed once and cached in OUT.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from ..models import create_model
from ..species import SPECIES_COUNT
from . import KD_ALPHA, KD_TEMPERATURE
from .data import augment, data_hash, list_split, load_split, to_input
from .losses import kd_loss, label_loss
from .trainer import Stage, Trainer, read_last, warmup_cosine, write_metrics  # noqa: F401 (re-exported)


@dataclass
class StudentConfig:
    data: str
    out: str
    family: str = "kpu_mobilenet_v1"
    width: float = 0.75
    input: int = 128
    classes: int = SPECIES_COUNT
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
    kd_temperature: float = KD_TEMPERATURE
    kd_alpha: float = KD_ALPHA
    groups: str | None = None  # a grouping file: train a coarse model that predicts the group
    tensorboard: str | None = None  # write scalars for TensorBoard here (off by default)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int, batch: int = 256, device: torch.device | None = None
) -> dict:
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


class StudentStage(Stage):
    """A KPU-family student from scratch on sprite augmentation (or camera frames), with the
    labels and, when ``cfg.teacher`` is set, the teacher's cached logits (:func:`.losses.kd_loss`).
    Under DDP each process takes its share of every batch."""

    name = "student"

    def __init__(self, cfg: StudentConfig, train, val, soft, dhash: str, rank: int, world: int, log):
        self.cfg, self.train, self.val, self.soft, self.rank, self.world = cfg, train, val, soft, rank, world
        self.family, self.classes = cfg.family, list(range(1, cfg.classes + 1))
        self.meta = {"config": asdict(cfg), "data_hash": dhash}
        self.warmup_epochs = cfg.warmup_epochs
        self.model = create_model(cfg.family, width=cfg.width, input=cfg.input, classes=cfg.classes)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.net = self.model
        if world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(self.model)
            log(f"DDP: {world} processes, {cfg.batch} images each per step")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        # a last partial batch is kept only if every process gets at least 2 images of it (batch norm
        # needs two, and DDP needs every process to take the same number of steps)
        per_step = cfg.batch * world
        self.steps = max(1, len(train) // per_step + (1 if len(train) % per_step >= 2 * world else 0))

    def _share(self, perm: torch.Tensor, s: int) -> torch.Tensor:
        n = self.cfg.batch * self.world
        return perm[s * n : (s + 1) * n][self.rank :: self.world]

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        self.perm = torch.randperm(len(self.train), generator=self.generator)
        self.batches = None
        if self.cfg.camera_aug_ramp >= 0:
            mine = torch.cat([self._share(self.perm, s) for s in range(self.steps)])
            self.batches = _camera_batches(self.train, mine, self.cfg, epoch)

    def step(self, epoch: int, s: int) -> tuple[float, int]:
        cfg = self.cfg
        idx = self._share(self.perm, s)
        xb = next(self.batches) if self.batches is not None else augment(self.train.x[idx], cfg.input, self.generator)
        xb = xb.contiguous(memory_format=torch.channels_last)
        logits = self.net(xb)
        y = self.train.y[idx]
        if self.soft is None:
            loss = label_loss(logits, y, cfg.label_smoothing)
        else:
            loss = kd_loss(
                logits,
                self.soft[idx],
                y,
                temperature=cfg.kd_temperature,
                alpha=cfg.kd_alpha,
                smoothing=cfg.label_smoothing,
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), len(idx)

    def validate(self) -> dict:
        return evaluate(self.model, self.val.x, self.val.y, self.cfg.input)

    def best_meta(self) -> dict:
        return dict(self.meta)

    def check_resume(self, state: dict, path: Path, log) -> None:
        cfg = self.cfg
        if not isinstance(state.get("meta"), dict) or "config" not in state["meta"]:
            raise PokedexError(
                f"{path} was written by another stage ({state.get('stage')})",
                "use another --out, or delete the file to start over",
            )
        saved = StudentConfig(**state["meta"]["config"])
        if (saved.family, saved.width, saved.input, saved.classes) != (cfg.family, cfg.width, cfg.input, cfg.classes):
            raise PokedexError(
                f"{path} is a {saved.family} w{saved.width} @{saved.input} x{saved.classes} run; "
                f"asked for {cfg.family} w{cfg.width} @{cfg.input} x{cfg.classes}",
                "use the same model options to resume, or another --out",
            )
        old, new = state["meta"]["data_hash"], self.meta["data_hash"]
        if old != new:
            log(f"warning: the training split changed since {path} was written (data hash {old} -> {new})")


def train_student(cfg: StudentConfig, *, resume: bool = False, log=print) -> dict:
    """Train (or resume) a student with :class:`.trainer.Trainer`. Under ``torchrun`` each process
    takes its share of every batch (DDP); rank 0 evaluates and writes checkpoints."""
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
    if resume and last.exists():
        read_last(last)  # a corrupt or foreign file is refused before the data is loaded
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
            raise PokedexError(
                f"{cfg.groups} has {n_groups} groups but --classes is {cfg.classes}",
                f"pass --classes {n_groups} with --groups",
            )
        lut = torch.tensor([g.get(d, -1) for d in range(1, SPECIES_COUNT + 1)])
        train.y, val.y = lut[train.y], lut[val.y]
        if (train.y < 0).any() or (val.y < 0).any():
            raise PokedexError(f"{cfg.groups} does not place every species of the data in a group")
    log(f"loaded {len(train)} train / {len(val)} validation images at {store}px in {time.time() - t0:.0f} s")
    missing = sorted(set(train.y.tolist()) - set(val.y.tolist()))
    if missing:
        log(
            f"warning: {len(missing)} species have training images but none in validation "
            f"(e.g. #{missing[0] + 1:04d}); validation accuracy says nothing about them"
        )
    soft = teacher_logits(cfg, train, dhash, out, log) if cfg.teacher else None
    stage = StudentStage(cfg, train, val, soft, dhash, rank, world, log)
    stage.generator = gen
    callbacks = []
    if cfg.tensorboard and rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(cfg.tensorboard)

        def scalars(m: dict) -> None:
            for k in ("train_loss", "val_loss", "top1", "top5", "lr", "images_per_s"):
                tb.add_scalar(k, m[k], m["epoch"])
            tb.flush()

        callbacks.append(scalars)
    res = Trainer(
        stage,
        out,
        cfg.epochs,
        resume=resume,
        patience=cfg.patience,
        rank=rank,
        world=world,
        log=log,
        callbacks=callbacks,
    ).fit()
    return {"best_top1": res["best"], "best_epoch": res["best_epoch"] or 0, "history": res["history"]}


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
        raise PokedexError(
            f"teacher {tpath} has {len(classes)} classes, the student {cfg.classes}",
            "distil between models of the same class list",
        )
    teacher.eval()
    t0 = time.time()
    outs = []
    with torch.no_grad():
        for i in range(0, len(train), 128):
            outs.append(teacher(to_input(train.x[i : i + 128], size)).float())
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
