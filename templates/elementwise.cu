// The broadcast of a bias into a product's output, which cuBLAS then accumulates onto with beta = 1.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

// out[i] = bias[(i / inner) % channels] for i < total: a per-channel bias laid out channel-major ((batch, channels,
// inner) with inner = L) or token-major ((tokens, channels) with inner = 1).
extern "C" __global__ void mamba_fill_broadcast(float* __restrict__ out, const float* __restrict__ bias, int channels,
                                                long long inner, long long total)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        out[i] = bias[(i / inner) % channels];
}

// ssm_state[i, :] = chunk_states[i, chunks − 1, :] for each of `rows` (batch × channel) rows of N states: the scan's
// final state, which a prefill hands to the one-token decode steps.
extern "C" __global__ void mamba_take_last_state(const float* __restrict__ chunk_states, float* __restrict__ ssm_state,
                                                 long long rows, int chunks, int states)
{
    const long long total = rows * states;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        const long long row = i / states;
        const int n = (int)(i % states);
        ssm_state[i] = chunk_states[(row * chunks + chunks - 1) * states + n];
    }
}
