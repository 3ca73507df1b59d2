"""benchmarks: the results table is built from what was measured (no run here: `make bench` measures)."""

from __future__ import annotations

from benchmarks.__main__ import readme_table


def test_readme_table_reports_every_part():
    results = {
        "machine": "x86_64, 2 cores", "date": "2026-01-01",
        "eval": {"items": 100, "batched_s": 1.0, "per_example_s": 7.5, "speedup": 7.5, "differing_generations": 0},
        "train": {"bf16, 1 thread": {"precision": "bf16", "threads": 1, "tokens_per_s": 1000.0, "seconds_per_900_steps": 90.0,
                                     "achieved_flops": 2e9, "matmul_peak_flops": 5e9, "fraction_of_peak": 0.4}},
        "world": {"seconds": 270.0, "target_s": 120.0, "oracle_s": 115.0},
        "series": [{"name": "01_a", "seconds": 30.0, "peak_rss_gb": 0.5}, {"name": "02_b", "seconds": 90.0, "peak_rss_gb": 1.5}],
    }
    table = readme_table(results)
    assert "**7.5x**" in table and "| 0 |" in table
    assert "| bf16, 1 thread | 1000 | 90 s | 2.0 | 5.0 | **40%** |" in table
    assert "| train both into an empty cache | 120 s | 115 s | **4.5 min** |" in table
    assert "**2.0 min**" in table and "**1.50 GB** (max)" in table
    assert readme_table({"machine": "m", "date": "d"}).startswith("Measured on: m (d).")
