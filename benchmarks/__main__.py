"""Benchmarks, run on demand (`make bench`): ratios measured side by side in one run.

    python -m benchmarks                 # all three parts
    python -m benchmarks --parts eval train
    python -m benchmarks --parts series  # per-notebook wall time and peak memory (runs the series)

1. eval    batched, KV-cached VerbMem/KnowMem generation vs a per-example loop that follows the
           reference protocol (one prompt at a time), same model, same items; differing generations counted.
2. train   the unlearning loop's tokens/s and achieved FLOP/s vs a measured matmul peak of this machine,
           for bf16 and fp32 weights.
3. series  every notebook on the default, in its own process: wall time and peak resident memory.

Results are printed and written to benchmarks/results.json; `--write-readme` also rewrites the table in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results.json"


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


# --- 1. evaluation throughput --------------------------------------------------------------------
@torch.no_grad()
def per_example_generate(model, tokenizer, prompts, max_new_tokens):
    """The reference protocol: one prompt at a time, greedy, no batching."""
    limit = model.config.max_position_embeddings
    outs = []
    for p in prompts:
        enc = tokenizer(p, return_tensors="pt")
        new = max(1, min(max_new_tokens, limit - enc["input_ids"].shape[1]))
        gen = model.generate(**enc, max_new_tokens=new, do_sample=False, num_beams=1,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        outs.append(tokenizer.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return outs


def bench_eval(world) -> dict:
    from utils.data import qa_prompt
    from utils.metrics import greedy_generate

    model, tok, data = world.target, world.tokenizer, world.data
    prompts = [qa_prompt(d["question"]) for d in data.knowmem["forget"] + data.knowmem["retain"]]
    prompts += [d["prompt"] for d in data.verbmem]
    new = 32
    greedy_generate(model, tok, prompts[:8], new)  # warm-up
    t0 = time.perf_counter()
    batched = greedy_generate(model, tok, prompts, new, batch_size=64)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = per_example_generate(model, tok, prompts, new)
    t_single = time.perf_counter() - t0
    differ = sum(a != b for a, b in zip(batched, single))
    return {"items": len(prompts), "batched_s": t_batched, "per_example_s": t_single,
            "speedup": t_single / t_batched, "differing_generations": differ}


# --- 2. training throughput ----------------------------------------------------------------------
def matmul_peak(dtype: torch.dtype, n: int = 1024, repeats: int = 10) -> float:
    """Achieved FLOP/s of a large square matmul in ``dtype`` (this machine's practical peak)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def bench_train(world, steps: int = 60) -> dict:
    from utils.data import encode_examples
    from utils.unlearning import UnlearnRecipe, forget_retain_examples, unlearn

    forget, retain = forget_retain_examples(world.data, "text")
    batch = UnlearnRecipe().batch_size
    n_matmul = sum(p.numel() for n, p in world.target.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    # tokens per step, as padded batches the loop computes (forget + retain, the recipe's batch each)
    width_f = encode_examples(world.tokenizer, forget)["input_ids"].shape[1]
    width_r = encode_examples(world.tokenizer, retain)["input_ids"].shape[1]
    tokens_per_step = batch * (width_f + width_r)
    out = {}
    before = torch.get_num_threads()
    thread_counts = sorted({1, os.cpu_count() or 1})
    try:
        for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            for threads in thread_counts:
                torch.set_num_threads(threads)
                peak = matmul_peak(dtype)
                t0 = time.perf_counter()
                unlearn(world.target, world.tokenizer, forget, retain, method="GA_GDR", steps=steps, lr=2e-5, batch_size=batch,
                        alpha=1.0, precision=precision, eval_every=None, progress=False, seed=0, device="cpu")
                dt = time.perf_counter() - t0
                flops = 6 * n_matmul * tokens_per_step * steps / dt
                out[f"{precision}, {threads} thread{'s' if threads > 1 else ''}"] = {
                    "precision": precision, "threads": threads, "steps": steps, "seconds": dt,
                    "seconds_per_900_steps": dt / steps * 900, "tokens_per_s": tokens_per_step * steps / dt,
                    "achieved_flops": flops, "matmul_peak_flops": peak, "fraction_of_peak": flops / peak}
    finally:
        torch.set_num_threads(before)
    return out


# --- 3. the tiny world, cold --------------------------------------------------------------------
def bench_world() -> dict:
    """Cold training of the tiny target and oracle (seed 0) into an empty temporary cache."""
    import tempfile

    from utils.models import get_tiny_world

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        world = get_tiny_world(seed=0, cache_dir=cache, progress=False)
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "target_s": world.history["target"][-1]["seconds"],
            "oracle_s": world.history["oracle"][-1]["seconds"]}


# --- 4. the series ---------------------------------------------------------------------------------
def bench_series(out: Path) -> list[dict]:
    import psutil

    from utils.series import notebook_sources

    rows = []
    for py in notebook_sources():
        number = py.name[:2]
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "utils.series", "--only", py.stem, "--out", str(out)], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        parent = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                procs = [parent] + parent.children(recursive=True)
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.5)
        rows.append({"notebook": number, "name": py.stem, "seconds": time.perf_counter() - t0,
                     "peak_rss_gb": peak / 2**30, "ok": proc.returncode == 0})
        print(f"  {py.stem}: {rows[-1]['seconds']:.0f} s, peak {rows[-1]['peak_rss_gb']:.2f} GB, ok={rows[-1]['ok']}", flush=True)
    return rows


def readme_table(results: dict) -> str:
    lines = [f"Measured on: {results['machine']} ({results['date']}).", ""]
    if "eval" in results:
        e = results["eval"]
        lines += ["| evaluation (tiny target) | items | batched | per example | ratio | differing generations |", "|---|---|---|---|---|---|",
                  f"| KnowMem + VerbMem greedy generation | {e['items']} | {e['batched_s']:.2f} s | {e['per_example_s']:.2f} s | **{e['speedup']:.1f}x** | {e['differing_generations']} |", ""]
    if "train" in results:
        lines += ["| unlearning loop (GA_GDR on the text, batch 16 + 16) | tokens/s | 900 steps take | achieved GFLOP/s | matmul peak GFLOP/s | share of peak |",
                  "|---|---|---|---|---|---|"]
        for p, t in results["train"].items():
            lines.append(f"| {p} | {t['tokens_per_s']:.0f} | {t['seconds_per_900_steps']:.0f} s | {t['achieved_flops'] / 1e9:.1f} | "
                         f"{t['matmul_peak_flops'] / 1e9:.1f} | **{t['fraction_of_peak']:.0%}** |")
        lines.append("")
    if "world" in results:
        w = results["world"]
        lines += ["| tiny world, cold (target + oracle, seed 0) | target | oracle | total incl. saving |", "|---|---|---|---|",
                  f"| train both into an empty cache | {w['target_s']:.0f} s | {w['oracle_s']:.0f} s | **{w['seconds'] / 60:.1f} min** |", ""]
    if "series" in results:
        lines += ["| notebook | wall time | peak memory |", "|---|---|---|"]
        for r in results["series"]:
            lines.append(f"| {r['name']} | {r['seconds']:.0f} s | {r['peak_rss_gb']:.2f} GB |")
        total = sum(r["seconds"] for r in results["series"])
        peak = max(r["peak_rss_gb"] for r in results["series"])
        lines += [f"| **total** | **{total / 60:.1f} min** | **{peak:.2f} GB** (max) |", ""]
    return "\n".join(lines)


def write_readme(results: dict) -> None:
    readme = Path(__file__).resolve().parent / "README.md"
    text = readme.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    readme.write_text(f"{head}{start}\n{readme_table(results)}\n{end}{tail}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="*", default=["eval", "train", "world", "series"],
                        choices=["eval", "train", "world", "series"])
    parser.add_argument("--train-steps", type=int, default=60)
    parser.add_argument("--write-readme", action="store_true", help="rewrite the results table in benchmarks/README.md")
    args = parser.parse_args(argv)

    from utils.models import get_tiny_world
    from utils.repro import seed_everything

    seed_everything(0)
    results = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    print(f"machine: {results['machine']}")
    world = get_tiny_world(seed=0) if {"eval", "train"} & set(args.parts) else None
    if "eval" in args.parts:
        results["eval"] = e = bench_eval(world)
        print(f"evaluation: batched {e['batched_s']:.2f} s vs per-example {e['per_example_s']:.2f} s for {e['items']} items "
              f"-> {e['speedup']:.1f}x faster (goal >= 5x); {e['differing_generations']} generations differ")
    if "train" in args.parts:
        results["train"] = bench_train(world, args.train_steps)
        for p, t in results["train"].items():
            print(f"training {p}: {t['tokens_per_s']:.0f} tokens/s ({t['seconds_per_900_steps']:.0f} s per 900 steps), {t['achieved_flops'] / 1e9:.1f} GFLOP/s = "
                  f"{t['fraction_of_peak']:.0%} of the {t['precision']} matmul peak ({t['matmul_peak_flops'] / 1e9:.1f} GFLOP/s; goal >= 30%)")
    if "world" in args.parts:
        results["world"] = w = bench_world()
        print(f"tiny world, cold: target {w['target_s']:.0f} s + oracle {w['oracle_s']:.0f} s, {w['seconds'] / 60:.1f} min in all (goal <= 6 min)")
    if "series" in args.parts:
        print("series (each notebook in its own process, offline default):")
        results["series"] = bench_series(ROOT / "build" / "bench-notebooks")
        total = sum(r["seconds"] for r in results["series"])
        peak = max(r["peak_rss_gb"] for r in results["series"])
        print(f"series total {total / 60:.1f} min (goal <= 15 min), peak {peak:.2f} GB (goal <= 4 GB)")
    RESULTS.write_text(json.dumps(results, indent=1))
    if args.write_readme:
        write_readme(results)
    print(f"\nwritten: {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
