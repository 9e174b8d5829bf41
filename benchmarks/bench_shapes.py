"""Certification throughput at the shapes of the field: digits, CIFAR-10, ImageNet.

For each shape, in a fresh subprocess (so that its peak resident memory,
``ru_maxrss``, is its own; ``tracemalloc`` does not see torch's
allocations), on one model with random weights (throughput does not depend on
them) and the same inputs:

* **certify**: :meth:`SmoothedClassifier.certify` with the defaults of a
  user (``memory_format="auto"``: the engine times both layouts once, on its
  first call, and keeps the faster one);
* **raw loops**: the least a certification must do, written by hand for each
  memory layout: per batch, Gaussian noise into a preallocated buffer of
  that layout, plus the input, the forward pass and the argmax, over the
  same batches as certify (``n0`` then ``n`` draws per input, ``batch_size``
  per forward pass); no counting, no seeding per input, no bounds.

The ratio is the faster raw loop's time over certify's (target >= 0.9);
the notes add the ratio to the raw loop in the layout certify chose (the
engine's own overhead, apart from the probe's choice).  Times are medians of
interleaved rounds (each round runs every function once, so a slow spell of
a shared machine hits all alike); a warm-up call of each comes first, and
certify's first call (the layout probe included) is reported apart.  On CPU
the times are the process's CPU seconds (one torch thread): on a shared
2-core machine wall-clock times swing with the other users' load, CPU time
much less; the wall-clock ratio is in the notes.  On a GPU they are
wall-clock times.  At the CIFAR ResNet-20 shape, certify with
``precision="bfloat16"`` is timed too (a different base classifier: see the
scaling page).  Shapes: the digits CNN of ``smoothlearn._demo`` on 1x8x8,
``smoothlearn.zoo`` ``cifar_resnet20`` and ``cifar_resnet110`` on 3x32x32,
``resnet50`` on 3x224x224 (one input, few draws: about 0.2 s per image on
one CPU thread).

Run ``python benchmarks/bench_shapes.py [--quick] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

#: (name, architecture, input shape, classes, inputs, n0, n, batch_size,
#: rounds) per mode.  Sizes keep the quick mode under two minutes on 2 shared
#: cores; the cheap shapes get more rounds, since bursts of a shared machine
#: hit short timings hardest.
SHAPES = {
    True: [
        ("digits", "digits_cnn", (1, 8, 8), 10, 50, 100, 2_000, 1_000, 7),
        ("CIFAR-10 ResNet-20", "cifar_resnet20", (3, 32, 32), 10, 2, 16, 112, 256, 5),
        ("CIFAR-10 ResNet-110", "cifar_resnet110", (3, 32, 32), 10, 1, 16, 112, 128, 3),
        ("ImageNet ResNet-50", "resnet50", (3, 224, 224), 1000, 1, 4, 12, 16, 3),
    ],
    False: [
        ("digits", "digits_cnn", (1, 8, 8), 10, 100, 100, 10_000, 1_000, 7),
        (
            "CIFAR-10 ResNet-20",
            "cifar_resnet20",
            (3, 32, 32),
            10,
            4,
            100,
            1_000,
            256,
            5,
        ),
        ("CIFAR-10 ResNet-110", "cifar_resnet110", (3, 32, 32), 10, 2, 50, 500, 256, 5),
        ("ImageNet ResNet-50", "resnet50", (3, 224, 224), 1000, 2, 8, 56, 32, 3),
    ],
}


def _child(spec: dict) -> dict:
    """Measure one shape in this (fresh) process; return the measurements."""
    import resource
    import time

    import numpy as np
    import torch

    from smoothlearn import SmoothedClassifier
    from smoothlearn._demo import DigitsCNN
    from smoothlearn.models import _LAYOUTS
    from smoothlearn.zoo import get_architecture

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    shape, n_inputs = tuple(spec["shape"]), spec["n_inputs"]
    n0, n, batch_size, sigma = spec["n0"], spec["n"], spec["batch_size"], 0.25
    torch.manual_seed(0)
    if spec["arch"] == "digits_cnn":
        model = DigitsCNN()
    else:
        model = get_architecture(spec["arch"])
    model = model.to(device).eval()
    X = np.random.default_rng(0).random((n_inputs, *shape), dtype=np.float32)
    y = np.arange(n_inputs) % spec["n_classes"]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def raw_loop(layout):
        """Noise + input + forward + argmax over certify's batches."""
        fmt = torch.channels_last if layout == "channels_last" else None
        rows = min(batch_size, n_inputs * max(n0, n))
        buf = torch.empty((rows, *shape), device=device)
        if fmt is not None:
            buf = buf.contiguous(memory_format=fmt)
        x = torch.from_numpy(X).to(device)
        gen = torch.Generator(device=device).manual_seed(0)

        def run():
            with torch.inference_mode():
                for n_draws in (n0, n):
                    total, done = n_inputs * n_draws, 0
                    while done < total:
                        b = min(batch_size, total - done)
                        batch = buf[:b].normal_(generator=gen).mul_(sigma)
                        batch.add_(x[done // n_draws])
                        model(batch).argmax(1)
                        done += b
            sync()

        return run

    def certify_with(**params):
        clf = SmoothedClassifier(
            model,
            sigma=sigma,
            n0=n0,
            n=n,
            batch_size=batch_size,
            device=device,
            random_state=0,
            **params,
        ).fit(X, y)

        def run():
            clf.certify(X)
            sync()

        return run

    fns = {
        "certify": certify_with(),
        "raw_contiguous": raw_loop("contiguous"),
        "raw_channels_last": raw_loop("channels_last"),
    }
    if spec["bfloat16"]:
        fns["certify_bfloat16"] = certify_with(precision="bfloat16")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    fns["certify"]()  # the layout probe runs here, once
    first_certify = time.perf_counter() - start
    rss_certify = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_certify = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None
    )
    for name, fn in fns.items():  # warm-up (first-call costs of each)
        if name != "certify":
            fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(spec["rounds"]):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start)
    # CPU seconds of this process on CPU (one torch thread: the work done,
    # whatever share of a core the machine's other users leave it); wall
    # clock on a GPU, where the process waits for the device.
    times = cpu if device.type == "cpu" else wall
    key = (shape, str(device), torch.float32, None)
    return {
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "clock": "process CPU time" if device.type == "cpu" else "wall clock",
        "wall_s": wall,
        "cpu_s": cpu,
        "first_certify_s": first_certify,
        "layout": _LAYOUTS.get(model, {}).get(key, "contiguous"),
        "peak_rss_mib_certify": rss_certify,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib_certify": gpu_certify,
        "samples": n_inputs * (n0 + n),
    }


def _measure(spec: dict) -> dict:
    """Run one shape in a fresh process importing this checkout's smoothlearn."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": root if not path else root + os.pathsep + path}
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"bench_shapes child {spec['arch']} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False, device: str = "cpu", threads: int | None = None) -> list:
    """Rows of the shapes benchmark (see the module docstring)."""
    import torch

    threads = threads or torch.get_num_threads()
    rows = []
    for name, arch, shape, k, n_inputs, n0, n, batch_size, rounds in SHAPES[quick]:
        spec = {
            "arch": arch,
            "shape": shape,
            "n_classes": k,
            "n_inputs": n_inputs,
            "n0": n0,
            "n": n,
            "batch_size": batch_size,
            "device": device,
            "threads": threads,
            "rounds": rounds,
            "bfloat16": arch == "cifar_resnet20" and device == "cpu",
        }
        m = _measure(spec)
        med = m["median_s"]
        raw_c, raw_l = med["raw_contiguous"], med["raw_channels_last"]
        best = min(raw_c, raw_l)
        same = med[f"raw_{m['layout']}"]  # the raw loop in the layout certify ran
        wall = {k: statistics.median(v) for k, v in m["wall_s"].items()}
        wall_ratio = (
            min(wall["raw_contiguous"], wall["raw_channels_last"]) / wall["certify"]
        )
        setting = (
            f"{name} {'x'.join(map(str, shape))}, {n_inputs} input"
            f"{'s' if n_inputs > 1 else ''}, n0={n0}, n={n:,}, batch {batch_size}"
        )
        memory = f"peak RSS {m['peak_rss_mib_certify']:.0f} MiB after certify"
        if m["peak_gpu_mib_certify"] is not None:
            memory += f", GPU {m['peak_gpu_mib_certify']:.0f} MiB"
        rows.append(
            {
                "name": f"certify vs faster raw loop: {setting}",
                "baseline_s": best,
                "smoothlearn_s": med["certify"],
                "ratio": best / med["certify"],
                "notes": f"target >= 0.9 ({m['clock']}); auto layout: "
                f"{m['layout']}, vs the raw loop in that layout "
                f"{same / med['certify']:.2f}; raw contiguous / channels_last "
                f"{raw_c / raw_l:.2f}; wall-clock ratio {wall_ratio:.2f}; "
                f"{m['samples'] / med['certify']:,.0f} samples/s; {memory}; "
                f"first call (probe) {m['first_certify_s']:.3g} s",
                "threads": threads,
                **{k: v for k, v in m.items() if k != "median_s"},
                **{f"median_{k}_s": v for k, v in med.items()},
            }
        )
        if "certify_bfloat16" in med:
            rows.append(
                {
                    "name": f"certify precision='bfloat16' vs float32: {setting}",
                    "baseline_s": med["certify"],
                    "smoothlearn_s": med["certify_bfloat16"],
                    "ratio": med["certify"] / med["certify_bfloat16"],
                    "notes": f"speed-up of autocast ({m['clock']}; another base "
                    "classifier); "
                    f"{m['samples'] / med['certify_bfloat16']:,.0f} samples/s",
                    "threads": threads,
                }
            )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(_child(json.loads(args.child))), flush=True)
        return
    import torch

    torch.set_num_threads(args.threads)
    rows = run(quick=args.quick, device=args.device, threads=args.threads)
    print(f"torch threads: {args.threads}\n")
    print("| measure | baseline (s) | smoothlearn (s) | ratio | notes |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['baseline_s']:.3g} | {r['smoothlearn_s']:.3g} | "
            f"{r['ratio']:.2f} | {r['notes']} |"
        )


if __name__ == "__main__":
    main()
