"""Minimal CUDA driver API binding over ctypes, sharing PyTorch's primary context and current stream, so kernels
compiled from the templates can be launched on torch tensors' memory."""
import ctypes

import torch

CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

_cuda = ctypes.CDLL("libcuda.so.1")


def check(status, what):
    if status != 0:
        name = ctypes.c_char_p()
        text = ctypes.c_char_p()
        _cuda.cuGetErrorName(status, ctypes.byref(name))
        _cuda.cuGetErrorString(status, ctypes.byref(text))
        raise RuntimeError(f"{what}: {name.value.decode() if name.value else status} "
                           f"({text.value.decode() if text.value else ''})")


def ensure_context():
    torch.cuda.init()
    torch.zeros(1, device="cuda")  # makes the primary context current on this thread


class Module:
    def __init__(self, image):
        ensure_context()
        self.handle = ctypes.c_void_p()
        self._image = ctypes.create_string_buffer(image)
        check(_cuda.cuModuleLoadData(ctypes.byref(self.handle), self._image), "cuModuleLoadData")
        self.functions = {}

    def function(self, name):
        if name not in self.functions:
            f = ctypes.c_void_p()
            check(_cuda.cuModuleGetFunction(ctypes.byref(f), self.handle, name.encode()), f"cuModuleGetFunction {name}")
            self.functions[name] = f
        return self.functions[name]

    def global_ints(self, name, count):
        ptr = ctypes.c_uint64()
        size = ctypes.c_size_t()
        check(_cuda.cuModuleGetGlobal_v2(ctypes.byref(ptr), ctypes.byref(size), self.handle, name.encode()),
              f"cuModuleGetGlobal {name}")
        host = (ctypes.c_int * count)()
        check(_cuda.cuMemcpyDtoH_v2(host, ptr, ctypes.c_size_t(4 * count)), "cuMemcpyDtoH")
        return list(host)

    def launch(self, name, grid, block, smem, *args):
        """grid: blocks, or (x, y) blocks."""
        f = self.function(name)
        if smem > 48 * 1024:
            check(_cuda.cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, ctypes.c_int(smem)),
                  "cuFuncSetAttribute")
        holders = []
        for a in args:
            if isinstance(a, torch.Tensor):
                holders.append(ctypes.c_void_p(a.data_ptr()))
            elif a is None:
                holders.append(ctypes.c_void_p(0))
            elif isinstance(a, float):
                holders.append(ctypes.c_float(a))
            elif isinstance(a, tuple) and a[0] == "i64":
                holders.append(ctypes.c_longlong(a[1]))
            else:
                holders.append(ctypes.c_int(a))
        params = (ctypes.c_void_p * len(holders))(*[ctypes.cast(ctypes.byref(h), ctypes.c_void_p) for h in holders])
        stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
        grid_x, grid_y = grid if isinstance(grid, tuple) else (grid, 1)
        check(_cuda.cuLaunchKernel(f, grid_x, grid_y, 1, block, 1, 1, smem, stream, params, None),
              f"cuLaunchKernel {name}")
