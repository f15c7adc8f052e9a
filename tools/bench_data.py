#!/usr/bin/env python3
"""Benchmark the data pipeline: ingest and process throughput (images/s), cold and warm (cached).

    python tools/bench_data.py [SOURCE]      # default: ../shared/data/pokemon
Prints figures; writes only to a temporary folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from pokedex_host.dataset.check import verify  # noqa: E402
from pokedex_host.dataset.ingest import ingest_folder  # noqa: E402
from pokedex_host.dataset.process import process  # noqa: E402


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "pokemon"
    quiet = lambda m: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t = time.time()
        rep = ingest_folder(src, data, log=quiet)
        t_ingest = time.time() - t
        t = time.time()
        cold = process(data, log=quiet)
        t_cold = time.time() - t
        t = time.time()
        warm = process(data, log=quiet)
        t_warm = time.time() - t
        t = time.time()
        v = verify(data, decode=True, expect_species=0)
        t_verify = time.time() - t
    print(f"source: {src} ({rep.seen:,} files) on {os.cpu_count()} cores")
    print(
        f"ingest        {t_ingest:7.1f} s  {rep.seen / t_ingest:8.0f} images/s  "
        f"({rep.added:,} stored, {len(rep.problems)} problems)"
    )
    print(f"process cold  {t_cold:7.1f} s  {cold.images / t_cold:8.0f} images/s  ({cold.rendered:,} rendered)")
    print(f"process warm  {t_warm:7.1f} s  {warm.images / t_warm:8.0f} images/s  ({warm.cached:,} from cache)")
    print(f"verify        {t_verify:7.1f} s  {v.images / t_verify:8.0f} images/s  ({len(v.failures)} failures)")


if __name__ == "__main__":
    main()
