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

// Raw 16-byte vector of activations.
struct alignas(16) Raw
{
    mg_in_t v[VEC];
};

__device__ __forceinline__ float value(const Raw& r, int j) { return MAMBA_INPUT_BF16 ? mg_bf16_to_f32((mg_bf16)r.v[j]) : (float)r.v[j]; }
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
    for (int i = 0; i < PER; ++i)
    {
        const int col0 = (i * THREADS + (int)threadIdx.x) * VEC;
        if (vec && col0 + VEC <= V) held[i] = *reinterpret_cast<const Raw*>(x + col0);
        else
        {
#pragma unroll
            for (int j = 0; j < VEC; ++j) held[i].v[j] = col0 + j < V ? x[col0 + j] : (mg_in_t)0;
        }
    }

    float run_max = -3.402823466e38f;
#pragma unroll
    for (int i = 0; i < PER; ++i)
#pragma unroll
        for (int j = 0; j < VEC; ++j)
            if ((i * THREADS + (int)threadIdx.x) * VEC + j < valid_vocab) run_max = fmaxf(run_max, value(held[i], j));
    const float mx = mg_block_max(run_max, scratch);
    float run_sum = 0.f;
#pragma unroll
    for (int i = 0; i < PER; ++i)
#pragma unroll
        for (int j = 0; j < VEC; ++j)
            if ((i * THREADS + (int)threadIdx.x) * VEC + j < valid_vocab) run_sum += mg_exp2((value(held[i], j) - mx) * MG_LOG2E);
    const float sum = mg_block_sum(run_sum, scratch);
    if (threadIdx.x == 0) loss[row] = target >= 0 ? mg_log2(sum) * MG_LN2 + mx - target_logit : 0.f;
    const float scale = target >= 0 ? grad_scale / sum : 0.f;
    const float target_grad = target >= 0 ? grad_scale : 0.f;

#pragma unroll
    for (int i = 0; i < PER; ++i)
    {
        const int col0 = (i * THREADS + (int)threadIdx.x) * VEC;
        float g[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j)
        {
            const int col = col0 + j;
            g[j] = col < valid_vocab ? mg_exp2((value(held[i], j) - mx) * MG_LOG2E) * scale - (col == target ? target_grad : 0.f) : 0.f;
        }
        if (vec && col0 + VEC <= V)
        {
            Raw out;
#pragma unroll
            for (int j = 0; j < VEC; ++j) mg_store(&out.v[j], g[j]);
            *reinterpret_cast<Raw*>(dx + col0) = out;
        }
        else
        {
#pragma unroll
            for (int j = 0; j < VEC; ++j)
                if (col0 + j < V) mg_store(dx + col0 + j, g[j]);
        }
    }
}
