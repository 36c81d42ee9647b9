// The gradient's global L2 norm for clipping, measured on the device so the gradient never leaves it. Deterministic:
// a fixed grid of MG_NORM_BLOCKS × MG_NORM_THREADS (the host launches exactly that), each thread summing its
// grid-stride share of g² in double, then a shared-memory tree within the block and one block adding the block
// sums in index order. The same gradient gives the same bits on every run and every GPU; double keeps the sum of
// millions of squares as exact as the CPU path's (GradientClipping.SumOfSquares), so both clip by the same factor.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MG_NORM_THREADS
#define MG_NORM_THREADS 256
#endif
#ifndef MG_NORM_BLOCKS
#define MG_NORM_BLOCKS 512
#endif

// Launch facts for the host: threads per block, blocks of the first pass.
extern "C" __constant__ int mg_norm_config[2] = {MG_NORM_THREADS, MG_NORM_BLOCKS};

// Sums MG_NORM_THREADS doubles of a block by halving; returns the total in thread 0.
__device__ __forceinline__ double mg_block_sum_f64(double v, double* scratch)
{
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (int half = MG_NORM_THREADS / 2; half > 0; half >>= 1)
    {
        if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
        __syncthreads();
    }
    return scratch[0];
}

// Pass 1: partials[blockIdx.x] = Σ g[i]² over the block's grid-stride share.
extern "C" __global__ void __launch_bounds__(MG_NORM_THREADS)
mg_sumsq_partial_f64(const float* __restrict__ g, long long n, double* __restrict__ partials)
{
    __shared__ double scratch[MG_NORM_THREADS];
    double acc = 0.0;
    for (long long i = (long long)blockIdx.x * MG_NORM_THREADS + threadIdx.x; i < n; i += (long long)gridDim.x * MG_NORM_THREADS)
    {
        const double value = g[i];
        acc += value * value;
    }
    const double total = mg_block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// Pass 2 (one block): out[0] = Σ partials[j], each thread taking a strided share, then the tree.
extern "C" __global__ void __launch_bounds__(MG_NORM_THREADS)
mg_sum_f64(const double* __restrict__ partials, int parts, double* __restrict__ out)
{
    __shared__ double scratch[MG_NORM_THREADS];
    double acc = 0.0;
    for (int j = threadIdx.x; j < parts; j += MG_NORM_THREADS) acc += partials[j];
    const double total = mg_block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) out[0] = total;
}

// Multiplies a buffer by a factor in place (a data-parallel rank weights its gradient before the sum over ranks).
extern "C" __global__ void mg_scale_f32(float* __restrict__ values, long long n, float factor)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        values[i] = __fmul_rn(values[i], factor);
}
