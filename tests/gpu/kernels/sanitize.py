"""GPU machine, under compute-sanitizer: launches the scan kernels (the forward on each path: narrow, wide, split
along L; the backward, the partial sums) on small shapes covering every work split (N = 1 … 256, channels not filling
the last block, L shorter than a tile and not a multiple of the chunk, every selectivity ablation, bf16), and with
`all` also every other template's checks. The sanitizer's report is the result; the values are checked elsewhere
(check_and_time.py).

    compute-sanitizer --tool memcheck python3 tests/gpu/kernels/sanitize.py [all]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvrtc import Nvrtc  # noqa: E402
from scan import ScanKernels, make_inputs  # noqa: E402

CASES = [  # N, ED, batch, L, (selective Δ, B, C), z, bf16
    (16, 50, 2, 300, (1, 1, 1), 1, 0),
    (16, 50, 2, 600, (1, 1, 1), 1, 1),
    (16, 50, 1, 1, (1, 1, 1), 1, 0),
    (8, 50, 2, 37, (1, 1, 1), 1, 1),
    (1, 50, 2, 37, (1, 1, 1), 1, 0),
    (64, 50, 1, 70, (1, 1, 1), 1, 0),
    (256, 20, 1, 37, (1, 1, 1), 1, 0),
    (16, 50, 2, 37, (0, 0, 0), 0, 0),
    (16, 50, 2, 37, (1, 1, 0), 1, 0),
    (16, 50, 2, 37, (1, 0, 1), 1, 1),
]


def main():
    nv = Nvrtc()
    for n, ed, b, length, sel, has_z, bf16 in CASES:
        k = ScanKernels(nv, n, ed, *sel, has_z=has_z, bf16=bf16)
        x = make_inputs(k, b, length, 1)
        dout = torch.randn(b, ed, length, device="cuda").to(k.dtype)
        for force in ((True, 1), (False, 3), (True, 3), None):   # every forward path; the plan's last
            k.force = force
            _, states = k.forward(x)
        k.backward(x, states, dout)
        torch.cuda.synchronize()
        print(f"ran scan N={n} ED={ed} b={b} L={length} sel={sel} z={has_z} bf16={bf16}", flush=True)
    if "all" in sys.argv:
        import check_and_time as cat
        import others
        others.check_all(nv, cat.RESULTS, cat.compare)
        others.check_rest(nv, cat.RESULTS, cat.compare)
        print("ran the other templates' checks", flush=True)


if __name__ == "__main__":
    main()
