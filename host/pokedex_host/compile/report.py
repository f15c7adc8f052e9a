"""The build's human report (Markdown + a PNG of the memory budget); the manifest is artifact.py's."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .. import paths
from ..sizes import format_size
from .record import BuildRecord


def git_revision() -> str | None:
    root = paths.repo_root()
    if root is None:
        return None
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def budget_png(path: Path, mem, verdict, board_name: str) -> None:
    from ..plotting import pyplot, save_png

    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [3, 1]})
    parts = [
        ("kmodel", mem.kmodel_bytes, "#4c72b0"),
        ("working data", mem.data_bytes, "#dd8452"),
        ("input", mem.input_bytes, "#55a868"),
        ("output", mem.output_bytes, "#c44e52"),
    ]
    parts += [(what.split(",")[0], b, "#937860") for what, b in verdict.app]  # the camera buffers
    left = 0
    for name, b, c in parts:
        ax1.barh([0], [b / 1e6], left=[left / 1e6], color=c, label=f"{name} {b / 1e6:.2f} MB")
        left += b
    ax1.axvline(verdict.ram_budget / 1e6, color="k", ls="--", lw=1.5)
    ax1.text(verdict.ram_budget / 1e6, 0.45, f" free heap {verdict.ram_budget / 1e6:.2f} MB", va="center", fontsize=8)
    ax1.set_xlim(0, max(verdict.ram_budget, verdict.ram_used) * 1.15 / 1e6)
    ax1.set_yticks([])
    ax1.set_xlabel("system heap free after boot, MB (10^6 B)")
    ax1.set_title(f"{board_name}: run-time RAM {'fits' if verdict.fits else 'OVER BUDGET'}", fontsize=10)
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.38), ncol=3, fontsize=8, frameon=False)
    ax2.bar([0], [mem.kpu_peak / 2**20], color="#8172b3")
    ax2.axhline(verdict.kpu_sram / 2**20, color="k", ls="--", lw=1.5)
    ax2.set_ylim(0, max(verdict.kpu_sram, mem.kpu_peak) * 1.15 / 2**20)
    ax2.set_xticks([])
    ax2.set_ylabel("KPU SRAM, MiB")
    ax2.set_title(f"KPU peak {mem.kpu_peak / 2**20:.2f} MiB", fontsize=10)
    fig.tight_layout()
    fig.subplots_adjust(bottom=0.42)  # room for the legend under the axis label
    save_png(fig, path, dpi=110)


def _pct(v) -> str:
    return "—" if v is None else f"{v:.1f} %"


def report_markdown(record: BuildRecord) -> str:
    b, mem, v, ver, lint = record.board, record.memory, record.verdict, record.verification, record.lint
    inp = record.input.as_dict()
    lines = [f"# build-kmodel report: {record.source.name}", ""]
    for w in record.warnings:
        lines.append(f"> **WARNING:** {w}")
        lines.append("")
    lines += [
        f"- board profile: `{b.name}` — {b.description}",
        f"- kmodel format: v{record.kmodel_version} "
        + (
            f"(re-emitted from nncase {record.nncase}'s v5 build, kept as model.v5.kmodel)"
            if record.conversion is not None
            else f"(nncase {record.nncase})"
        )
        + "; this firmware loads "
        + ", ".join(f"v{x}" for x in b.firmware.kmodel_versions)
        + (
            f"\n- v3 check: the v3 file (our interpreter) gives the v5 file's simulator outputs bit for bit on "
            f"{record.v3_check['identical']} of {record.v3_check['images']} images"
            if record.v3_check
            else ""
        ),
        f"- verdict: **{'fits' if v.fits else 'does not fit'}** — {format_size(v.ram_used)} of "
        f"{format_size(v.ram_budget)} of free system heap (the model and the camera buffers); KPU SRAM peak "
        f"{mem.kpu_peak:,} of {b.kpu_sram:,} B",
        f"- budget: {v.ram_budget:,} B, from {v.budget_named}",
        f"- input: {inp['shape']} {inp['dtype']} {inp['channels']} range {inp['range']}; {inp['resize']}",
        f"- export: {record.export.source_kind}; {record.export.simplifier}; 1/255 input scale "
        + ("folded into the first conv" if record.export.scale_folded else "not folded"),
        f"- calibration: {record.calibration.x.shape[0]} images from `{record.calibration.source}`, "
        f"ranges by nncase's `{record.calibrate_method}`",
        "",
        "![memory budget](budget.png)",
        "",
        "## Memory (from the compiler's schedule"
        + ("; v3: file + the main memory it declares)" if record.conversion is not None else ")"),
        "",
        "| part | bytes |",
        "|---|---:|",
        f"| kmodel file | {mem.kmodel_bytes:,} |",
        f"| working data (main memory) | {mem.data_bytes:,} |",
        f"| input | {mem.input_bytes:,} |",
        f"| output | {mem.output_bytes:,} |",
        f"| **model run-time total** | **{mem.runtime_total:,}** |",
        *[f"| {what} | {n:,} |" for what, n in v.app],
        f"| **system heap the app needs** | **{v.ram_used:,}** |",
        f"| free system heap after boot (the budget) | {v.ram_budget:,} |",
        f"| headroom | {v.ram_budget - v.ram_used:,} |",
        f"| KPU SRAM peak (separate 2 MiB) | {mem.kpu_peak:,} |",
        "",
        f"The budget is the free system heap after boot (`Maix.utils.heap_free()` before the app allocates "
        f"anything). {v.gc_heap}."
        if v.gc_heap
        else "",
        "",
    ]
    if mem.crosscheck:
        lines += ["Schedule vs kmodel_info.txt disagreements: " + "; ".join(mem.crosscheck), ""]
    lines += ["Largest items:", "", v.table(), ""]
    if v.problems:
        lines += ["## Over budget", ""] + [f"- {p}" for p in v.problems] + ["", "Options:", ""]
        lines += [f"- {o}" for o in v.options] + [""]
    lines += [
        "## Where layers run",
        "",
        f"{len(lint.kpu_convs)} convolutions on the KPU; CPU ops after compiling: "
        + (", ".join(f"{k} `{n}`" for k, n in mem.cpu_ops) or "none"),
        "",
    ]
    if lint.cpu_fallbacks:
        lines += ["Layers that fall back to the CPU:", ""]
        lines += [f"- `{e.node}` ({e.op}): {e.reason} — fix: {e.fix}" for e in lint.cpu_fallbacks] + [""]
    if record.lint_disagreements:
        lines += ["Lint and compiler disagree (please report): " + "; ".join(record.lint_disagreements), ""]
    if ver is not None:
        lines += [
            "## Verification on the host",
            "",
            f"{ver.images} held-out images ({ver.labelled} labelled) from `{record.holdout.source}`; "
            "float = ONNX in onnxruntime, kmodel = "
            + (
                "the v3 file in our v3 interpreter (uint8 KPU arithmetic)."
                if ver.v3_vs_v5
                else "nncase simulator (uint8)."
            ),
            "",
            "| | float | kmodel |",
            "|---|---:|---:|",
            f"| top-1 | {_pct(ver.float_top1)} | {_pct(ver.kmodel_top1)} |",
            f"| top-5 | {_pct(ver.float_top5)} | {_pct(ver.kmodel_top5)} |",
            "",
            f"- top-1 agreement float vs kmodel: {ver.agreement_top1:.1f} %",
            f"- cosine of logits: mean {ver.cosine_mean:.4f}, min {ver.cosine_min:.4f}",
            f"- accuracy loss: {'—' if ver.loss_pp is None else f'{ver.loss_pp:.2f} pp'} "
            f"(threshold {ver.threshold_pp} pp){' — **FLAGGED**' if ver.flagged else ''}",
        ]
        if ver.v3_vs_v5:
            c = ver.v3_vs_v5
            lines.append(
                f"- kmodel v3 (our interpreter) vs nncase's v5 (its simulator): identical outputs, bit for bit, "
                f"on {c['identical']} of {c['images']} images"
            )
        lines += [f"- {n}" for n in ver.notes] + [""]
    for n in record.export.notes:
        lines.append(f"- note: {n}")
    lines.append("")
    return "\n".join(lines)
