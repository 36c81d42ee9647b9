// Small element-wise kernels around the matrix products: the broadcast of a bias into a product's output (cuBLAS
// then accumulates onto it with beta = 1), the conversions of fp32 values into the activation type where an fp32
// tensor feeds a product (cuBLAS needs both operands of one type), and the hand-over of the scan's final state.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

// out[i] = bias[(i / inner) % channels] for i < total: a per-channel bias laid out channel-major ((batch, channels,
// inner) with inner = L) or token-major ((tokens, channels) with inner = 1).
extern "C" __global__ void mamba_fill_broadcast(mg_in_t* __restrict__ out, const float* __restrict__ bias, int channels,
                                                long long inner, long long total)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        mg_store(out + i, bias[(i / inner) % channels]);
}

// out[i] = in[i] rounded to the activation type: the bf16 copy of the fp32 weights, or of the fp32 residual
// gradient where it meets bf16 activations in a product. (With fp32 activations it is a plain copy.)
extern "C" __global__ void mamba_to_activation(const float* __restrict__ in, mg_in_t* __restrict__ out, long long count)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
        mg_store(out + i, in[i]);
}

// mg_sum_slices with the sum rounded to the activation type once at the end: per-block partials of the scan's
// per-time dB/dC, finished in slice order into the tensor the x_proj products read.
extern "C" __global__ void mamba_sum_slices_to_activation(const float* __restrict__ in, mg_in_t* __restrict__ out, int parts,
                                                          long long count)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
    {
        float acc = 0.f;
        for (int j = 0; j < parts; ++j) acc += in[(long long)j * count + i];
        mg_store(out + i, acc);
    }
}

// out[0] = Σ in[0 … count) with one block: each thread sums its grid-stride share in order, then the block's fixed-order
// reduction (mg_block_sum) adds the threads' sums, so the result is the same bits every run. For the batch loss (one
// value per token), where a single-thread sum over tens of thousands of rows would be one long chain of loads.
extern "C" __global__ void mamba_sum_all(const float* __restrict__ in, float* __restrict__ out, long long count)
{
    __shared__ float scratch[32];
    float acc = 0.f;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) acc += in[i];
    const float total = mg_block_sum(acc, scratch);
    if (threadIdx.x == 0) out[0] = total;
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
