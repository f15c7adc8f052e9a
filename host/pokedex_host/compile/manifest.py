"""What ``manifest.json`` says about a build: the document ``artifact.write_manifest`` writes.

The folder's format (file names, reading, the writing itself) is ``artifact.py``'s; this module
only gathers the build's typed results into the document's sections.
"""

from __future__ import annotations

from pathlib import Path


def manifest_document(out: Path, ctx: dict, files: list[str]) -> dict:
    """The manifest of a build being staged in ``out``, from build-kmodel's typed results; ``files``
    (names in ``out``) are listed with their hashes and sizes."""
    from .. import __version__
    from ..fsutil import sha256_file
    from .report import git_revision

    b, mem = ctx["board"], ctx["memory"]
    ver = ctx["verification"]
    return {
        "tool": {"name": "pokedex-host", "version": __version__, "git": git_revision()},
        "source": {"path": str(ctx["source"]), "kind": ctx["export"].source_kind,
                   "sha256": sha256_file(ctx["source"])},
        "board": {"name": b.name, "profile_sha256": sha256_file(b.path), "firmware": b.firmware.family,
                  "flavour": b.firmware.flavour, "loads_kmodel_versions": list(b.firmware.kmodel_versions)},
        "kmodel": {"version": ctx["kmodel_version"], "compiler": f"nncase {ctx['nncase']}", "target": "k210",
                   "quantization": "uint8 PTQ", "loads_on_board_firmware": b.loads(ctx["kmodel_version"]),
                   "reproducible": ctx["reproducible"],
                   **({"re_emitted_from": "model.v5.kmodel",
                       "dequantize": [{"output": d.name, "scale": d.scale, "bias": d.bias}
                                      for d in ctx["conversion"].dequant],
                       "main_mem_usage": ctx["conversion"].main_mem_usage,
                       "v3_vs_v5": ctx.get("v3_check")}
                      if ctx.get("conversion") is not None else {})},
        "input": ctx["input"],
        "classes": len(ctx["export"].classes),
        "memory": mem.as_dict(),
        "budget": {"bytes": ctx["verdict"].ram_budget, "source": ctx["budget_source"], **ctx["verdict"].as_dict()},
        "calibration": {"source": ctx["calibration"].source, "count": len(ctx["calibration"]),
                        "seed": ctx["calibration_seed"], "method": ctx["calibrate_method"],
                        "files": ctx["calibration"].files,
                        "rejected": ctx["calibration"].rejected},
        "verification": ver.as_dict() if ver is not None else None,
        "lint": {"kpu_convs": len(ctx["lint"].kpu_convs),
                 "cpu_fallbacks": [{"node": e.node, "op": e.op, "reason": e.reason, "fix": e.fix}
                                   for e in ctx["lint"].cpu_fallbacks],
                 "disagreements_with_compiler": ctx["lint_disagreements"]},
        "export": {"simplifier": ctx["export"].simplifier, "scale_folded": ctx["export"].scale_folded,
                   "notes": ctx["export"].notes},
        "warnings": ctx["warnings"],
        "timings_s": ctx["timings"],
        "files": {f: {"sha256": sha256_file(out / f), "bytes": (out / f).stat().st_size} for f in files},
    }
