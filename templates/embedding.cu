// Token embedding: gather forward, deterministic scatter-add backward.
// Forward: out[t, :] = E[tokens[t], :] (fp32 residual stream); E is (vocab, D_MODEL) fp32 or bf16.
// Backward: dE[v, :] (+)= Σ dout[t, :] over the positions t holding token v, in increasing t. The host (which has
// the tokens anyway) passes the positions grouped by token: `order` lists positions sorted by (token, position),
// `offsets` (vocab + 1) where each token's run starts. One block per vocabulary row, fixed order, no atomics.
// With accumulate = 1 the sum is added to dE (tied embeddings: the LM head's gradient is already there).
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_D_MODEL
#define MAMBA_D_MODEL 768
#endif

extern "C" __global__ void mamba_embed_fwd(const int* __restrict__ tokens, const mg_in_t* __restrict__ E,
                                           float* __restrict__ out, int count, int vocab)
{
    constexpr int D = MAMBA_D_MODEL;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (long long)count * D;
         i += (long long)gridDim.x * blockDim.x)
    {
        const long long t = i / D;
        const int col = (int)(i % D);
        const int tok = tokens[t];
        out[i] = (tok >= 0 && tok < vocab) ? mg_load(E + (long long)tok * D + col) : 0.f;
    }
}

extern "C" __global__ void mamba_embed_bwd(const float* __restrict__ dout, const int* __restrict__ order,
                                           const int* __restrict__ offsets, float* __restrict__ dE, int vocab,
                                           int accumulate)
{
    constexpr int D = MAMBA_D_MODEL;
    for (int v = blockIdx.x; v < vocab; v += gridDim.x)
    {
        const int first = offsets[v], end = offsets[v + 1];
        if (first == end && accumulate) continue;
        for (int col = threadIdx.x; col < D; col += blockDim.x)
        {
            float acc = accumulate ? dE[(long long)v * D + col] : 0.f;
            for (int k = first; k < end; ++k) acc += dout[(long long)order[k] * D + col];
            dE[(long long)v * D + col] = acc;
        }
    }
}
