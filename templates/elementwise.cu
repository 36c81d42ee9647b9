// Small whole-tensor kernels of the language model around the mixer: the embedding lookup and the broadcast of a
// bias into a product's output (cuBLAS then accumulates onto it with beta = 1).
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_D_MODEL
#define MAMBA_D_MODEL 768
#endif
#ifndef MAMBA_VOCAB
#define MAMBA_VOCAB 50280
#endif

// r[t, :] = E[tokens[t], :] for t < tokens, rows of D_MODEL fp32. Ids are checked on the host before the launch.
extern "C" __global__ void mamba_embed_fwd(const int* __restrict__ tokens, const float* __restrict__ embedding,
                                           float* __restrict__ r, int count)
{
    const long long total = (long long)count * MAMBA_D_MODEL;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        const long long t = i / MAMBA_D_MODEL;
        const int col = (int)(i % MAMBA_D_MODEL);
        r[i] = embedding[(long long)tokens[t] * MAMBA_D_MODEL + col];
    }
}

// out[i] = bias[(i / inner) % channels] for i < total: a per-channel bias laid out channel-major ((batch, channels,
// inner) with inner = L) or token-major ((tokens, channels) with inner = 1).
extern "C" __global__ void mamba_fill_broadcast(float* __restrict__ out, const float* __restrict__ bias, int channels,
                                                long long inner, long long total)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        out[i] = bias[(i / inner) % channels];
}
