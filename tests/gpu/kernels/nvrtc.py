"""Compiles MambaGen kernel templates with NVRTC through ctypes (no toolkit headers, no nvcc).

Used by compile_check.py (CI-like check with Debian's NVRTC 11.8, no GPU) and by check_and_time.py (GPU machine).
A template is compiled the way the generator will feed it: common.cuh is handed to NVRTC as the header that the
template includes when run on its own, and a variant's constants become -D options (the generator prepends them as
#defines instead; every template guards its defaults with #ifndef)."""
import ctypes
import os

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "templates")

NVRTC_CANDIDATES = [
    "/usr/local/cuda/lib64/libnvrtc.so.13",
    "libnvrtc.so.13",
    "libnvrtc.so.12",
    "/usr/lib/x86_64-linux-gnu/libnvrtc.so.11.2",
    "libnvrtc.so.11.2",
]


class CompileError(Exception):
    pass


class Nvrtc:
    def __init__(self, path=None):
        last = None
        for cand in ([path] if path else NVRTC_CANDIDATES):
            try:
                self.lib = ctypes.CDLL(cand)
                self.path = cand
                break
            except OSError as e:
                last = e
        else:
            raise OSError(f"no NVRTC library found (tried {NVRTC_CANDIDATES}): {last}")
        self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
        self.version = (major.value, minor.value)

    def _check(self, status, what):
        if status != 0:
            raise CompileError(f"{what} failed: {self.lib.nvrtcGetErrorString(status).decode()}")

    def compile(self, name, defines=None, arch="compute_80", extra=()):
        """Returns (binary bytes, log). arch 'compute_XX' gives PTX, 'sm_XX' gives a CUBIN."""
        src = open(os.path.join(TEMPLATES, name), "rb").read()
        common = open(os.path.join(TEMPLATES, "common.cuh"), "rb").read()
        prog = ctypes.c_void_p()
        headers = (ctypes.c_char_p * 1)(common)
        names = (ctypes.c_char_p * 1)(b"common.cuh")
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), src, name.encode(), 1, headers, names),
                    "nvrtcCreateProgram")
        opts = [f"--gpu-architecture={arch}", "-std=c++17", "--extra-device-vectorization"]
        opts += [f"-D{k}={v}" for k, v in (defines or {}).items()]
        opts += list(extra)
        copts = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        status = self.lib.nvrtcCompileProgram(prog, len(opts), copts)
        size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(prog, log)
        log = log.value.decode(errors="replace")
        if status != 0:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))
            raise CompileError(f"{name} {defines}: {self.lib.nvrtcGetErrorString(status).decode()}\n{log}")
        cubin = arch.startswith("sm_")
        get_size = self.lib.nvrtcGetCUBINSize if cubin else self.lib.nvrtcGetPTXSize
        get = self.lib.nvrtcGetCUBIN if cubin else self.lib.nvrtcGetPTX
        self._check(get_size(prog, ctypes.byref(size)), "get size")
        out = ctypes.create_string_buffer(size.value)
        self._check(get(prog, out), "get binary")
        self.lib.nvrtcDestroyProgram(ctypes.byref(prog))
        return out.raw, log
