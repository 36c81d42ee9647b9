#!/usr/bin/env python3
"""Where a training step's time goes, from a dotnet-trace sampled-thread-time profile in speedscope format.

    dotnet-trace collect --profile dotnet-sampled-thread-time -o train.nettrace -- \
        samples/SelectiveCopying/bin/Release/net10.0/SelectiveCopying --variants S6 --steps 1000 --eval-every 0
    dotnet-trace convert --format Speedscope train.nettrace
    python3 samples/Benchmarks/training_split.py train.speedscope.json

Every thread's time inside the training loop (from the first to the last Trainer.TrainStep on the thread that runs
it) is split by the innermost category its stack is in: matrix products (Gemm), the selective scan forward and
backward, the causal convolution, the optimizer, waiting (idle worker threads and the caller waiting for them), and
the rest (norms, gates, embedding, cross-entropy, data, bookkeeping).
"""
import json
import sys

# Checked in order against the whole stack, innermost frame first; the first match names the category.
CATEGORIES = [
    ("waiting", ("WorkerPool.WaitForHelpers", "WorkerPool.SpinUntil", "SemaphoreSlim.", "Monitor.", "SpinWait", "Thread.Sleep", "PollGC",
                 "LowLevelLifoSemaphore", "WaitHandle.")),
    ("matrix products", ("MambaGen.Cpu.Gemm", "Avx512Kernel", "Avx2Kernel")),
    ("scan backward", ("ScanBackward",)),
    ("scan forward", ("ScanTask", ".Scan(")),
    ("convolution", ("Convolve",)),
    ("optimizer", ("AdamW.",)),
]
STEP_FRAME = "Trainer.TrainStep"
# Leaves the sampler adds below the method a thread was in.
PSEUDO_FRAMES = ("CPU_TIME", "UNMANAGED_CODE_TIME")


def category(stack_names):
    for name in reversed(stack_names):
        for label, keys in CATEGORIES:
            if any(key in name for key in keys):
                return label
    return "rest"


def main(path):
    data = json.load(open(path))
    names = [frame["name"] for frame in data["shared"]["frames"]]
    profiles = [p for p in data["profiles"] if p["type"] == "evented"]

    # The training window: where the step frame is open on the thread that runs the loop.
    window = None
    for profile in profiles:
        opened = [e["at"] for e in profile["events"] if e["type"] == "O" and STEP_FRAME in names[e["frame"]]]
        closed = [e["at"] for e in profile["events"] if e["type"] == "C" and STEP_FRAME in names[e["frame"]]]
        if opened:
            window = (min(opened), max(closed))
    if window is None:
        sys.exit(f"{path}: no {STEP_FRAME} frame; was the profile taken of a training run?")

    totals, rest_frames = {}, {}
    for profile in profiles:
        stack, last = [], None
        for event in profile["events"]:
            at = event["at"]
            if last is not None and stack:
                start, end = max(last, window[0]), min(at, window[1])
                if end > start:
                    stack_names = [names[f] for f in stack]
                    label = category(stack_names)
                    totals[label] = totals.get(label, 0.0) + (end - start)
                    if label == "rest":
                        method = next(n for n in reversed(stack_names) if n not in PSEUDO_FRAMES)
                        rest_frames[method] = rest_frames.get(method, 0.0) + (end - start)
            if event["type"] == "O":
                stack.append(event["frame"])
            elif stack:
                stack.pop()
            last = at

    unit = profiles[0].get("unit", "milliseconds")
    busy = sum(v for k, v in totals.items() if k != "waiting")
    everything = sum(totals.values())
    print(f"training window {window[1] - window[0]:.0f} {unit}; thread time {everything:.0f} {unit}, busy {busy:.0f}")
    print(f"{'category':<18} {'thread time':>12} {'% of busy':>10} {'% of all':>9}")
    for label in [c[0] for c in CATEGORIES if c[0] != "waiting"] + ["rest", "waiting"]:
        value = totals.get(label, 0.0)
        share_busy = f"{100 * value / busy:9.1f}%" if label != "waiting" else f"{'':>10}"
        print(f"{label:<18} {value:12.0f} {share_busy} {100 * value / everything:8.1f}%")
    print("largest methods in the rest:")
    for method, value in sorted(rest_frames.items(), key=lambda item: -item[1])[:8]:
        print(f"  {100 * value / busy:5.1f}%  {method[:110]}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: training_split.py TRACE.speedscope.json")
    main(sys.argv[1])
