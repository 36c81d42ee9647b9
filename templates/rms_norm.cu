// Fused residual add (fp32) + RMSNorm, forward and backward.
//   r_out = r_in + x            (x may be null: the first layer's residual is the embedding itself)
//   y = r_out · rsqrt(mean(r_out²) + eps) · w
// Rows are (tokens, D_MODEL); r_in, r_out fp32; x, y, dy in the input type; w fp32 (D_MODEL); rstd fp32 (tokens).
// Backward: dr = d_r_out + rstd·(w·dy − r̂·mean(w·dy·r̂)), r̂ = r_out·rstd; the same dr is the gradient of r_in and x.
// dw is summed per block over its rows, then over blocks by mg_sum_slices: no atomics, bit-deterministic.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_D_MODEL
#define MAMBA_D_MODEL 768
#endif
#ifndef MAMBA_NORM_EPS
#define MAMBA_NORM_EPS 1e-5f
#endif
#ifndef MAMBA_NORM_THREADS
#define MAMBA_NORM_THREADS 256
#endif
// Rows per block in the backward (each block writes one dw partial).
#ifndef MAMBA_NORM_BWD_ROWS
#define MAMBA_NORM_BWD_ROWS 32
#endif

namespace mg_norm {
constexpr int D = MAMBA_D_MODEL;
constexpr int T = MAMBA_NORM_THREADS;
constexpr int PER = (D + T - 1) / T;   // columns per thread
}

extern "C" __constant__ int mamba_norm_config[3] = {MAMBA_NORM_THREADS, MAMBA_NORM_BWD_ROWS, MAMBA_D_MODEL};

// One block per row.
extern "C" __global__ void __launch_bounds__(MAMBA_NORM_THREADS)
mamba_rmsnorm_fwd(const float* __restrict__ r_in, const mg_in_t* __restrict__ x, const float* __restrict__ w,
                  float* __restrict__ r_out, mg_in_t* __restrict__ y, float* __restrict__ rstd_out, int rows)
{
    using namespace mg_norm;
    __shared__ float scratch[32];
    const long long row = blockIdx.x;
    if (row >= rows) return;
    float v[PER];
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < PER; ++i)
    {
        const int col = threadIdx.x + i * T;
        v[i] = 0.f;
        if (col < D)
        {
            v[i] = r_in[row * D + col] + (x != nullptr ? mg_load(x + row * D + col) : 0.f);
            r_out[row * D + col] = v[i];
            ss = fmaf(v[i], v[i], ss);
        }
    }
    const float rstd = rsqrtf(mg_block_sum(ss, scratch) / D + MAMBA_NORM_EPS);
    if (threadIdx.x == 0) rstd_out[row] = rstd;
#pragma unroll
    for (int i = 0; i < PER; ++i)
    {
        const int col = threadIdx.x + i * T;
        if (col < D) mg_store(y + row * D + col, v[i] * rstd * w[col]);
    }
}

// Blocks of MAMBA_NORM_BWD_ROWS rows; d_r_out may be null (the last layer). dw_part is (blocks, D).
extern "C" __global__ void __launch_bounds__(MAMBA_NORM_THREADS)
mamba_rmsnorm_bwd(const float* __restrict__ r_out, const float* __restrict__ rstd_in, const float* __restrict__ w,
                  const mg_in_t* __restrict__ dy, const float* __restrict__ d_r_out, float* __restrict__ dr,
                  float* __restrict__ dw_part, int rows)
{
    using namespace mg_norm;
    __shared__ float scratch[32];
    float dw[PER];
#pragma unroll
    for (int i = 0; i < PER; ++i) dw[i] = 0.f;
    const int first = blockIdx.x * MAMBA_NORM_BWD_ROWS;
    const int last = min(first + MAMBA_NORM_BWD_ROWS, rows);
    for (long long row = first; row < last; ++row)
    {
        const float rstd = rstd_in[row];
        float rh[PER], wg[PER];
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < PER; ++i)
        {
            const int col = threadIdx.x + i * T;
            rh[i] = wg[i] = 0.f;
            if (col < D)
            {
                const float g = mg_load(dy + row * D + col);
                rh[i] = r_out[row * D + col] * rstd;
                wg[i] = g * w[col];
                dw[i] = fmaf(g, rh[i], dw[i]);
                dot = fmaf(wg[i], rh[i], dot);
            }
        }
        const float mean_dot = mg_block_sum(dot, scratch) / D;
#pragma unroll
        for (int i = 0; i < PER; ++i)
        {
            const int col = threadIdx.x + i * T;
            if (col < D)
            {
                const float g = rstd * (wg[i] - rh[i] * mean_dot);
                dr[row * D + col] = g + (d_r_out != nullptr ? d_r_out[row * D + col] : 0.f);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < PER; ++i)
    {
        const int col = threadIdx.x + i * T;
        if (col < D) dw_part[(long long)blockIdx.x * D + col] = dw[i];
    }
}
