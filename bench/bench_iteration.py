"""Time PMC iterations on the embedded model and the built-in sets, split by phase, with peak memory.

Also measures this machine's matmul peak in the same run and reports the fraction of it that the training
step achieves (FLOPs counted by torch's FlopCounterMode on the real training batches).

    python bench/bench_iteration.py                       # CPU here, writes bench/RESULTS-cpu.md
    python bench/bench_iteration.py --device cuda         # same code in bf16 on a GPU
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pmc_core import PMCRun, RunConfig, load_builtin, load_model  # noqa: E402
from pmc_core.config import ModelConfig  # noqa: E402
from pmc_core.methods import ForgetTargets  # noqa: E402
from pmc_core.storage import library_versions  # noqa: E402

PHASES = ("sample", "score", "train", "evaluate", "total")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Best FLOP/s of a square matmul on this device and dtype (2·n³ FLOPs per product)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def train_step_throughput(run: PMCRun, repeats: int = 3) -> tuple[float, float]:
    """FLOPs of one training step on the run's current targets, and its median wall time."""
    last = run.history[-1]
    targets = ForgetTargets([item.question for item in run.forget],
                            [p["target_text"] or "" for p in last["prompts"]], [])
    iteration = last["iteration"] + 1
    with FlopCounterMode(display=False) as counter:
        run._train(iteration, targets)
    times = []
    for _ in range(repeats):
        synchronize(run.device)
        started = time.perf_counter()
        run._train(iteration, targets)
        synchronize(run.device)
        times.append(time.perf_counter() - started)
    return counter.get_total_flops(), statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--forget-count", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=None, help="default: 2048 on CPU, 8192 on GPU")
    parser.add_argument("--out", default=None, help="markdown file (default: bench/RESULTS-<device>.md)")
    args = parser.parse_args()

    config = RunConfig(model=ModelConfig(source=args.model, device=args.device), iterations=args.iterations)
    loaded = load_model(args.model, device=args.device)
    device = loaded.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    forget, retain = load_builtin("forget")[: args.forget_count], load_builtin("retain")
    run = PMCRun(loaded, forget, retain, config)
    run.start()
    records = [run.step() for _ in range(args.iterations)]
    flops, train_seconds = train_step_throughput(run)
    size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    peak = matmul_peak(device, loaded.dtype, size)
    achieved = flops / train_seconds

    per_phase = {phase: [r["timings"].get(phase, 0.0) for r in records] for phase in PHASES}
    if device.type == "cuda":
        peak_memory = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (CUDA, allocated)"
    else:
        peak_memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process RSS)"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    versions = library_versions()
    lines = [
        f"# PMC iteration benchmark ({device.type})",
        "",
        f"- command: `python bench/bench_iteration.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- device: {name} ({device}), torch threads {torch.get_num_threads()}, dtype {str(loaded.dtype)[6:]}",
        f"- model: {args.model} ({loaded.num_parameters / 1e6:.1f} M parameters), LoRA rank "
        f"{config.method.lora_rank}, n = {config.sampling.num_samples} samples, "
        f"max {config.sampling.max_new_tokens} new tokens",
        f"- prompts: {len(forget)} forget (built-in, first {len(forget)}), {len(retain)} retain; "
        f"{args.iterations} timed iterations (greedy evaluation every {config.eval_every})",
        f"- torch {versions['torch']}, transformers {versions['transformers']}, peft {versions['peft']}",
        "",
        "| phase | mean s / iteration | min | max |",
        "| --- | ---: | ---: | ---: |",
    ]
    for phase, values in per_phase.items():
        lines.append(f"| {phase} | {statistics.fmean(values):.3f} | {min(values):.3f} | {max(values):.3f} |")
    lines += [
        "",
        f"- peak memory: {peak_memory}",
        f"- matmul peak measured in this run ({size}×{size}, {str(loaded.dtype)[6:]}): {peak / 1e9:.1f} GFLOP/s",
        f"- training step: {flops / 1e9:.2f} GFLOP counted by FlopCounterMode in {train_seconds:.3f} s "
        f"= {achieved / 1e9:.1f} GFLOP/s = **{100 * achieved / peak:.1f}% of the matmul peak**",
        f"- model load: {loaded.load_seconds:.1f} s",
        "",
    ]
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / f"RESULTS-{device.type}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
