"""Compiles every template with default constants and with a few constant sets, to PTX for compute_80 (and
compute_90 where this NVRTC knows it). Runs without a GPU: `python3 tests/gpu/kernels/compile_check.py [libnvrtc]`.
Exit status 1 on any compile error."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nvrtc import Nvrtc, CompileError, TEMPLATES  # noqa: E402
from variants import compile_sets  # noqa: E402


def main():
    nv = Nvrtc(sys.argv[1] if len(sys.argv) > 1 else None)
    print(f"NVRTC {nv.version[0]}.{nv.version[1]} ({nv.path})")
    archs = ["compute_80", "compute_90"]
    failures = 0
    count = 0
    for name in sorted(f for f in os.listdir(TEMPLATES) if f.endswith(".cu")):
        for defines in compile_sets(name):
            for arch in archs:
                try:
                    ptx, log = nv.compile(name, defines, arch)
                    count += 1
                    if "warning" in log:
                        print(f"  warn {name} {defines} {arch}:\n{log}")
                except CompileError as e:
                    failures += 1
                    print(f"FAIL {e}")
    print(f"{count} compiles ok, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
