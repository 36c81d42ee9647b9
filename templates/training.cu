// The two small kernels the GPU training step needs around A = −exp(A_log), beyond the other templates' backward
// kernels.
//   mamba_alog_grad: finishes the scan's per-batch dA partials (batch, ED·N) in batch order and applies the chain
//     rule through A = −exp(A_log): dA_log = dA · A. Fixed order, no atomics.
//   mamba_scaled_a: the scan's A2 = A·log2 e from A_log after an optimizer step on the device, in double so it
//     equals the host's upload bit for bit.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

extern "C" __global__ void mamba_alog_grad(const float* __restrict__ part_dA, const float* __restrict__ a_log,
                                           float* __restrict__ d_alog, int parts, long long count)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
    {
        float dA = 0.f;
        for (int j = 0; j < parts; ++j) dA += part_dA[(long long)j * count + i];
        d_alog[i] = dA * -expf(a_log[i]);
    }
}

extern "C" __global__ void mamba_scaled_a(const float* __restrict__ a_log, float* __restrict__ a2, long long count)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
        a2[i] = (float)(-exp((double)a_log[i]) * 1.4426950408889634);
}
