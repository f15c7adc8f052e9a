"""Images/s of each step of the release recipe on this machine: teacher forward (float32 and
bfloat16), teacher fine-tune step (frozen stem + 3 blocks), student step, online distillation step.

    .venv/bin/python tools/bench_recipe.py [--size 128] [--batch 64] [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from pokedex_host.models import create_model
from pokedex_host.train.recipe import _bf16_ok


def rate(fn, batch: int, steps: int) -> float:
    fn()  # warm-up (oneDNN picks its kernels on the first call)
    t = time.time()
    for _ in range(steps):
        fn()
    return steps * batch / (time.time() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.manual_seed(0)
    cl = torch.channels_last
    x = torch.rand(a.batch, 3, a.size, a.size).contiguous(memory_format=cl)
    y = torch.randint(0, 1025, (a.batch,))
    bf16 = _bf16_ok(torch.device("cpu"))
    teacher = create_model("efficientnet_lite", variant="lite0", input=a.size, classes=1025).to(memory_format=cl)
    student = create_model("kpu_mobilenet_v1", width=0.75, input=a.size, classes=1025).to(memory_format=cl)
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {a.size} px, batch {a.batch}, "
        f"bfloat16 {'available' if bf16 else 'not available'}"
    )

    teacher.eval()

    def t_fwd(dtype_bf16):
        def f():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype_bf16):
                teacher(x)

        return f

    print(f"teacher forward float32   {rate(t_fwd(False), a.batch, a.steps):7.1f} images/s")
    if bf16:
        print(f"teacher forward bfloat16  {rate(t_fwd(True), a.batch, a.steps):7.1f} images/s")
    teacher.train()
    frozen = [teacher._conv_stem, teacher._bn0, *teacher._blocks[:3]]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    opt_t = torch.optim.AdamW([p for p in teacher.parameters() if p.requires_grad], 1e-4)

    def t_step():
        for m in frozen:
            m.eval()
        loss = torch.nn.functional.cross_entropy(teacher(x), y)
        opt_t.zero_grad()
        loss.backward()
        opt_t.step()

    print(f"teacher fine-tune step    {rate(t_step, a.batch, a.steps):7.1f} images/s (stem + 3 blocks frozen)")
    student.train()
    opt_s = torch.optim.AdamW(student.parameters(), 1e-4)

    def s_step(kd=False):
        def f():
            if kd:
                teacher.eval()
                with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    soft = torch.softmax(teacher(x).float() / 2, 1)
            out = student(x)
            loss = torch.nn.functional.cross_entropy(out, y)
            if kd:
                loss = loss + torch.nn.functional.kl_div(torch.log_softmax(out / 2, 1), soft, reduction="batchmean")
            opt_s.zero_grad()
            loss.backward()
            opt_s.step()

        return f

    print(f"student step              {rate(s_step(), a.batch, a.steps):7.1f} images/s")
    print(
        f"distillation step         {rate(s_step(True), a.batch, a.steps):7.1f} images/s "
        "(teacher forward + student step)"
    )


if __name__ == "__main__":
    main()
