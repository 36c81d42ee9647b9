// Cross-entropy over the (padded) vocabulary, forward and backward fused, one block per row.
// logits (rows, VOCAB_PADDED) in the activation type; columns ≥ valid_vocab are left out of the softmax (pass
// VOCAB_PADDED to include them, as mamba_ssm and HF do); targets (rows) int, a negative target is ignored (loss 0,
// gradient 0). Writes loss[row] (fp32) and dlogits = (softmax − onehot)·grad_scale in the activation type (may
// alias logits; padded columns left out get 0). The mean loss: mamba_sum_all(loss, out, rows) / valid rows,
// with grad_scale = 1 / valid rows. All reductions in a fixed order.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_VOCAB
#define MAMBA_VOCAB 50280
#endif

extern "C" __global__ void mamba_cross_entropy(const mg_in_t* __restrict__ logits, const int* __restrict__ targets,
                                               float* __restrict__ loss, mg_in_t* __restrict__ dlogits,
                                               int valid_vocab, float grad_scale)
{
    constexpr int V = MAMBA_VOCAB;
    __shared__ float scratch[32];
    const long long row = blockIdx.x;
    const mg_in_t* x = logits + row * V;
    mg_in_t* dx = dlogits + row * V;
    const int target = targets[row];
    // One pass for the maximum and the sum of exponentials (each thread rescales its running sum when its maximum
    // grows), then the block combines the threads' pairs in a fixed order: the row is read twice in all, not three times.
    float run_max = -3.402823466e38f, run_sum = 0.f;
    for (int col = threadIdx.x; col < valid_vocab; col += blockDim.x)
    {
        const float v = mg_load(x + col);
        if (v > run_max)
        {
            run_sum = run_sum * mg_exp2((run_max - v) * MG_LOG2E) + 1.f;
            run_max = v;
        }
        else run_sum += mg_exp2((v - run_max) * MG_LOG2E);
    }
    const float mx = mg_block_max(run_max, scratch);
    float sum = mg_block_sum(run_sum * mg_exp2((run_max - mx) * MG_LOG2E), scratch);
    const float log_sum = mg_log2(sum) * MG_LN2;
    if (threadIdx.x == 0) loss[row] = target >= 0 ? log_sum + mx - mg_load(x + target) : 0.f;
    const float inv_sum = 1.f / sum;
    // dlogits may alias logits: thread 0 has read the target logit before this barrier, and every later write
    // replaces a column only after the same thread has read it.
    __syncthreads();
    for (int col = threadIdx.x; col < V; col += blockDim.x)
    {
        float gcol = 0.f;
        if (target >= 0 && col < valid_vocab)
            gcol = (mg_exp2((mg_load(x + col) - mx) * MG_LOG2E) * inv_sum - (col == target ? 1.f : 0.f)) * grad_scale;
        mg_store(dx + col, gcol);
    }
}
