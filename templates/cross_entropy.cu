// Cross-entropy over the (padded) vocabulary, forward and backward fused, one block per row.
// logits (rows, VOCAB_PADDED) in the activation type; columns ≥ valid_vocab are left out of the softmax (pass
// VOCAB_PADDED to include them, as mamba_ssm and HF do); targets (rows) int, a negative target is ignored (loss 0,
// gradient 0). Writes loss[row] (fp32) and dlogits = (softmax − onehot)·grad_scale in the activation type (may
// alias logits; padded columns left out get 0). The mean loss: mamba_sum_all(loss, out, rows) / valid rows,
// with grad_scale = 1 / valid rows. All reductions in a fixed order.
//
// The row is read from memory once: each thread keeps its columns in registers, raw (bf16 stays packed), from the
// load through the maximum, the sum of exponentials and the gradient, which overwrites them in place. Thread i holds
// the 16-byte vectors i, i + blockDim.x, …; with VOCAB_PADDED not a multiple of a vector or a misaligned row the
// same columns are read one by one.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_VOCAB
#define MAMBA_VOCAB 50280
#endif

// Threads per row (the host launches with mamba_ce_config[0]); the row is spread over their registers.
#ifndef MAMBA_CE_THREADS
#define MAMBA_CE_THREADS 1024
#endif
extern "C" __constant__ int mamba_ce_config[1] = {MAMBA_CE_THREADS};

namespace mg_ce {
constexpr int V = MAMBA_VOCAB;
constexpr int THREADS = MAMBA_CE_THREADS;
constexpr int VEC = 16 / (int)sizeof(mg_in_t);                     // columns per 16-byte vector
constexpr int PER = (V + VEC * THREADS - 1) / (VEC * THREADS);     // vectors per thread
static_assert(THREADS % 32 == 0 && THREADS <= 1024, "MAMBA_CE_THREADS: a multiple of 32, at most 1024");

// One 16-byte vector of activations as four 32-bit words (bf16: two per word, the lower column in the low half), so
// a vector costs four registers however it was read.
struct alignas(16) Raw
{
    unsigned int w[4];
};

__device__ __forceinline__ float value(const Raw& r, int j)
{
#if MAMBA_INPUT_BF16
    return __uint_as_float(j % 2 == 0 ? r.w[j / 2] << 16 : r.w[j / 2] & 0xffff0000u);
#else
    return __uint_as_float(r.w[j]);
#endif
}

// Columns col0 … col0 + VEC − 1 of row x (past V: 0), as one vector load when `vec`.
__device__ __forceinline__ Raw load(const mg_in_t* x, int col0, bool vec)
{
    if (vec && col0 + VEC <= V) return *reinterpret_cast<const Raw*>(x + col0);
    Raw r;
#pragma unroll
    for (int q = 0; q < 4; ++q)
    {
#if MAMBA_INPUT_BF16
        const unsigned int lo = col0 + 2 * q < V ? x[col0 + 2 * q] : 0u;
        const unsigned int hi = col0 + 2 * q + 1 < V ? x[col0 + 2 * q + 1] : 0u;
        r.w[q] = lo | hi << 16;
#else
        r.w[q] = col0 + q < V ? __float_as_uint(x[col0 + q]) : 0u;
#endif
    }
    return r;
}

// The gradient vector g (VEC columns) in the activation type.
__device__ __forceinline__ Raw pack(const float* g)
{
    Raw r;
#pragma unroll
    for (int q = 0; q < 4; ++q)
#if MAMBA_INPUT_BF16
        r.w[q] = (unsigned int)mg_f32_to_bf16(g[2 * q]) | (unsigned int)mg_f32_to_bf16(g[2 * q + 1]) << 16;
#else
        r.w[q] = __float_as_uint(g[q]);
#endif
    return r;
}
}

extern "C" __global__ void __launch_bounds__(MAMBA_CE_THREADS)
mamba_cross_entropy(const mg_in_t* __restrict__ logits, const int* __restrict__ targets, float* __restrict__ loss,
                    mg_in_t* __restrict__ dlogits, int valid_vocab, float grad_scale)
{
    using namespace mg_ce;
    __shared__ float scratch[32];
    const long long row = blockIdx.x;
    const mg_in_t* x = logits + row * V;
    mg_in_t* dx = dlogits + row * V;
    const int target = targets[row];
    // Read before any thread writes (dlogits may alias logits): the block's first barrier comes after it.
    const float target_logit = threadIdx.x == 0 && target >= 0 ? mg_load(x + target) : 0.f;
    const bool vec = V % VEC == 0 && ((unsigned long long)x & 15ull) == 0 && ((unsigned long long)dx & 15ull) == 0;

    Raw held[PER];
#pragma unroll
    for (int i = 0; i < PER; ++i) held[i] = load(x, (i * THREADS + (int)threadIdx.x) * VEC, vec);

    // Maximum and sum of exponentials in one sweep over the registers: per vector, its maximum rescales the running
    // sum when it raises the running maximum (exp2 of v·log2 e − max·log2 e: one FFMA and one MUFU per column).
    float run_max = -3.402823466e38f, run_sum = 0.f;
#pragma unroll
    for (int i = 0; i < PER; ++i)
    {
        const int scored = valid_vocab - (i * THREADS + (int)threadIdx.x) * VEC;   // scored columns in this vector
        float v[VEC];
        float vmax = -3.402823466e38f;
#pragma unroll
        for (int j = 0; j < VEC; ++j)
        {
            v[j] = value(held[i], j);
            if (scored >= VEC || j < scored) vmax = fmaxf(vmax, v[j]);
        }
        if (vmax > run_max)
        {
            run_sum *= mg_exp2((run_max - vmax) * MG_LOG2E);
            run_max = vmax;
        }
        const float max2 = run_max * MG_LOG2E;
#pragma unroll
        for (int j = 0; j < VEC; ++j)
            if (scored >= VEC || j < scored) run_sum += mg_exp2(fmaf(v[j], MG_LOG2E, -max2));
    }
    const float mx = mg_block_max(run_max, scratch);
    const float sum = mg_block_sum(run_sum * mg_exp2((run_max - mx) * MG_LOG2E), scratch);
    if (threadIdx.x == 0) loss[row] = target >= 0 ? mg_log2(sum) * MG_LN2 + mx - target_logit : 0.f;
    const float scale = target >= 0 ? grad_scale / sum : 0.f;
    const float target_grad = target >= 0 ? grad_scale : 0.f;
    const float mx2 = mx * MG_LOG2E;

#pragma unroll
    for (int i = 0; i < PER; ++i)
    {
        const int col0 = (i * THREADS + (int)threadIdx.x) * VEC;
        const int scored = valid_vocab - col0, target_at = target - col0;
        float g[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j)
            g[j] = scored >= VEC || j < scored ? mg_exp2(fmaf(value(held[i], j), MG_LOG2E, -mx2)) * scale - (j == target_at ? target_grad : 0.f) : 0.f;
        if (vec && col0 + VEC <= V) *reinterpret_cast<Raw*>(dx + col0) = pack(g);
        else
        {
#pragma unroll
            for (int j = 0; j < VEC; ++j)
                if (col0 + j < V) mg_store(dx + col0 + j, g[j]);
        }
    }
}
