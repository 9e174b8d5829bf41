"""Run every smoothlearn benchmark side by side and write one report.

Usage::

    python benchmarks/run_all.py --quick          # a few minutes on 2 CPU cores
    python benchmarks/run_all.py                  # the full suite
    python benchmarks/run_all.py --device cuda    # where a GPU is available

Each benchmark module exposes ``run(quick: bool) -> list[dict]`` whose rows
hold ``name``, ``baseline_s``, ``smoothlearn_s``, ``ratio`` and ``notes``
(extra keys are kept in the JSON).  Ratios are measured side by side in one
process run, because absolute times on shared machines mean little.  The
report goes to ``benchmarks/results/latest.md`` and ``latest.json`` with the
machine (CPU/GPU, cores) and the library versions.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Benchmark modules, in the order of the report.
MODULES = [
    "bench_certify",
    "bench_art",
    "bench_intervals",
    "bench_betting",
    "bench_lipschitz_radius",
    "bench_scaling",
    "bench_shapes",
    "bench_sequential",
    "bench_accuracy",
]


def machine_info(device: str) -> dict:
    import numpy
    import scipy
    import sklearn
    import torch

    import smoothlearn

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "versions": {
            "smoothlearn": smoothlearn.__version__,
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "torch": torch.__version__,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    with contextlib.suppress(OSError):  # not on every platform
        info["load_average"] = os.getloadavg()
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _call_run(module, quick: bool, device: str) -> list[dict]:
    params = inspect.signature(module.run).parameters
    if "device" in params:
        return module.run(quick=quick, device=device)
    return module.run(quick=quick)


def _fmt(x, spec):
    return "" if x is None else format(x, spec)


def to_markdown(rows: list[dict], info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if "gpu" in info else ""
    head = [
        "# smoothlearn benchmarks",
        "",
        f"Machine: {info['processor']}, {info['cpu_count']} cores "
        f"({info['torch_threads']} torch threads), device `{info['device']}`{gpu}; "
        f"Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + f"; {info['date']}.",
    ]
    if "load_average" in info:
        head.append(
            "Load average at the end: "
            + ", ".join(f"{x:.1f}" for x in info["load_average"])
            + "."
        )
    lines = [
        *head,
        "",
        "| benchmark | what | baseline (s) | smoothlearn (s) | ratio | notes |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.get('module', '')} | {r.get('name', '')} | "
            f"{_fmt(r.get('baseline_s'), '.4g')} | "
            f"{_fmt(r.get('smoothlearn_s'), '.4g')} | "
            f"{_fmt(r.get('ratio'), '.3g')} | {r.get('notes', '')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="the smaller, few-minute mode"
    )
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument(
        "--only", nargs="*", default=None, help="run only these modules"
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="output folder")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch (OpenMP) threads of every benchmark and of the processes "
        "they start (default: 1; on a shared 2-core machine a second thread "
        "that finds its core busy spins, and timings swing tenfold)",
    )
    args = parser.parse_args(argv)
    # Before torch is imported here or in a child process.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(HERE))
    rows: list[dict] = []
    failed = []
    start = time.perf_counter()
    for name in args.only or MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that benchmark is not part of this checkout
            raise
        t0 = time.perf_counter()
        try:
            out = _call_run(module, args.quick, args.device)
        except Exception:  # report and go on: one broken benchmark is not all
            failed.append(name)
            traceback.print_exc()
            continue
        for r in out:
            r.setdefault("module", name)
            rows.append(r)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    info = machine_info(args.device)
    info["total_s"] = time.perf_counter() - start
    info["mode"] = "quick" if args.quick else "full"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = to_markdown(rows, info)
    (out_dir / "latest.md").write_text(md)
    (out_dir / "latest.json").write_text(
        json.dumps({"machine": info, "rows": rows}, indent=2, default=str)
    )
    print(md)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
