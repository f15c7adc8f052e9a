"""What ``manifest.json`` says about a build: the document ``artifact.write_manifest`` writes.

The folder's format (file names, reading, the writing itself) is ``artifact.py``'s; this module
only gathers the build's typed results into the document's sections.
"""

from __future__ import annotations

from pathlib import Path

from .record import BuildRecord


def manifest_document(out: Path, record: BuildRecord, files: list[str]) -> dict:
    """The manifest of a build being staged in ``out``, from build-kmodel's typed results; ``files``
    (names in ``out``) are listed with their hashes and sizes."""
    from .. import __version__
    from ..fsutil import sha256_file
    from .report import git_revision

    b, mem = record.board, record.memory
    ver = record.verification
    return {
        "tool": {"name": "pokedex-host", "version": __version__, "git": git_revision()},
        "source": {"path": str(record.source), "kind": record.export.source_kind, "sha256": sha256_file(record.source)},
        "board": {
            "name": b.name,
            "profile_sha256": sha256_file(b.path),
            "firmware": b.firmware.family,
            "flavour": b.firmware.flavour,
            "loads_kmodel_versions": list(b.firmware.kmodel_versions),
        },
        "kmodel": {
            "version": record.kmodel_version,
            "compiler": f"nncase {record.nncase}",
            "target": "k210",
            "quantization": "uint8 PTQ",
            "loads_on_board_firmware": b.loads(record.kmodel_version),
            "reproducible": record.reproducible,
            **(
                {
                    "re_emitted_from": "model.v5.kmodel",
                    "dequantize": [
                        {"output": d.name, "scale": d.scale, "bias": d.bias} for d in record.conversion.dequant
                    ],
                    "main_mem_usage": record.conversion.main_mem_usage,
                    "v3_vs_v5": record.v3_check,
                }
                if record.conversion is not None
                else {}
            ),
        },
        "input": record.input.as_dict(),
        "classes": len(record.export.classes),
        "memory": mem.as_dict(),
        "budget": {"bytes": record.verdict.ram_budget, "source": record.budget_source, **record.verdict.as_dict()},
        "calibration": {
            "source": record.calibration.source,
            "count": len(record.calibration),
            "seed": record.calibration_seed,
            "method": record.calibrate_method,
            "files": record.calibration.files,
            "rejected": record.calibration.rejected,
        },
        "verification": ver.as_dict() if ver is not None else None,
        "lint": {
            "kpu_convs": len(record.lint.kpu_convs),
            "cpu_fallbacks": [
                {"node": e.node, "op": e.op, "reason": e.reason, "fix": e.fix} for e in record.lint.cpu_fallbacks
            ],
            "disagreements_with_compiler": record.lint_disagreements,
        },
        "export": {
            "simplifier": record.export.simplifier,
            "scale_folded": record.export.scale_folded,
            "notes": record.export.notes,
        },
        "warnings": record.warnings,
        "timings_s": record.timings,
        "files": {f: {"sha256": sha256_file(out / f), "bytes": (out / f).stat().st_size} for f in files},
    }
