// Causal depthwise conv over time + bias + SiLU (Mamba's conv1d), forward and backward, with a conv state for
// prefill continuation and decode.
//   pre[b,c,t] = bias[c] + Σ_{k<K} w[c,k]·x[b,c,t−K+1+k]      (x at negative time from conv_state_in, else 0)
//   out = silu(pre)
// x is read through runtime strides (so it can be the x half of in_proj's (batch, L, 2·ED) output); out, dout are
// (batch, ED, L) contiguous and dx has x's strides. conv_state is (batch, ED, K), newest input last; conv_state_out
// gets the last K inputs after this call. w is (ED, K), bias (ED), fp32.
//
// Work split: a block takes one (row, segment) pair, a segment being blockDim.x · MAMBA_CONV_ITEMS consecutive time
// steps of one (batch, channel) row; its lanes take MAMBA_CONV_ITEMS consecutive steps each, so a warp reads and
// writes one contiguous stretch (16-byte vector accesses where the row is contiguous and aligned). The K − 1 inputs
// before a lane's run come from the previous lane by shuffle (lane 0 reads them), so every input is read from memory
// once. Blocks walk the (row, segment) pairs with a grid stride: any grid works; the block size must be a multiple
// of 32.
//
// The backward is one pass: dpre = dout·silu'(pre) stays in registers, dx[t] = Σ_k w[k]·dpre[t+K−1−k] takes the
// next K − 1 dpre from the next lane (lane 31 recomputes them), and the block sums dw and dbias over its segment in
// a fixed order into one partial per (row, segment); mamba_conv_bwd_weights adds the partials in a fixed order. No
// atomics, so the backward is bit-identical run to run.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_D_INNER
#define MAMBA_D_INNER 1536
#endif
#ifndef MAMBA_CONV_K
#define MAMBA_CONV_K 4
#endif
#ifndef MAMBA_HAS_CONV_BIAS
#define MAMBA_HAS_CONV_BIAS 1
#endif

// Time steps per lane: a multiple of 8, so a run is whole 16-byte vectors in both activation types.
#ifndef MAMBA_CONV_ITEMS
#define MAMBA_CONV_ITEMS 8
#endif

// For the host: [0] the block size it launches with, [1] time steps per lane, so one block covers [0]·[1] steps of
// a row (a segment) and a grid of batch·ED·ceil(L / ([0]·[1])) blocks covers everything once.
#ifndef MAMBA_CONV_THREADS
#define MAMBA_CONV_THREADS 256
#endif
extern "C" __constant__ int mamba_conv_config[2] = {MAMBA_CONV_THREADS, MAMBA_CONV_ITEMS};

namespace mg_conv {
constexpr int ED = MAMBA_D_INNER;
constexpr int K = MAMBA_CONV_K;
constexpr int ITEMS = MAMBA_CONV_ITEMS;
constexpr int HALO = K - 1;                       // inputs before a run that its outputs need
constexpr int WINDOW = ITEMS + HALO;              // the halo, then the run
constexpr int VEC = 16 / (int)sizeof(mg_in_t);    // activations per 16-byte access
static_assert(ITEMS % 8 == 0, "MAMBA_CONV_ITEMS must be a multiple of 8");
static_assert(HALO <= ITEMS, "the halo comes from the previous lane's run: K − 1 must not exceed MAMBA_CONV_ITEMS");
static_assert(MAMBA_CONV_THREADS % 32 == 0 && MAMBA_CONV_THREADS <= 1024, "MAMBA_CONV_THREADS: a multiple of 32, at most 1024");

// One lane's run: row (b, c) and its first time step.
struct Run
{
    int b, c;
    int t0;
};

// The run of this lane in block task `task` ((b·ED + c)·segments + segment).
__device__ __forceinline__ Run run_of(long long task, long long segments)
{
    const long long row = task / segments;
    Run r;
    r.b = (int)(row / ED);
    r.c = (int)(row - (long long)r.b * ED);
    r.t0 = (int)(task - row * segments) * (blockDim.x * ITEMS) + threadIdx.x * ITEMS;
    return r;
}

__device__ __forceinline__ long long segments_per_row(int L) { return (L + (long long)blockDim.x * ITEMS - 1) / ((long long)blockDim.x * ITEMS); }
__device__ __forceinline__ long long first_task() { return (long long)blockIdx.y * gridDim.x + blockIdx.x; }
__device__ __forceinline__ long long task_stride() { return (long long)gridDim.x * gridDim.y; }
__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15ull) == 0; }

// Whether whole runs of a row with strides (sb, sc, st) can move as 16-byte vectors: contiguous in time, every row
// start and run start on a 16-byte boundary (runs start at multiples of ITEMS, a multiple of VEC).
__device__ __forceinline__ bool vectorizable(const mg_in_t* p, long long sb, long long sc, long long st, int L)
{
    return p == nullptr || (st == 1 && sb % ITEMS == 0 && sc % ITEMS == 0 && L % ITEMS == 0 && aligned16(p));
}

__device__ __forceinline__ void load_vec(const float* p, float* v)
{
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
}

__device__ __forceinline__ void load_vec(const mg_bf16* p, float* v)
{
    const uint4 q = *reinterpret_cast<const uint4*>(p);
    const unsigned int words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        v[2 * i] = __uint_as_float(words[i] << 16);
        v[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
    }
}

__device__ __forceinline__ void store_vec(float* p, const float* v) { *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]); }

__device__ __forceinline__ void store_vec(mg_bf16* p, const float* v)
{
    unsigned int words[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) words[i] = (unsigned int)mg_f32_to_bf16(v[2 * i]) | ((unsigned int)mg_f32_to_bf16(v[2 * i + 1]) << 16);
    *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
}

// A run of ITEMS values at row[t0·st …], 0 past L: vectors when `vec` (then st == 1), else one by one.
__device__ __forceinline__ void load_run(const mg_in_t* row, long long st, int t0, int L, bool vec, float* v)
{
    if (vec && t0 + ITEMS <= L)
    {
#pragma unroll
        for (int j = 0; j < ITEMS; j += VEC) load_vec(row + t0 + j, v + j);
    }
    else
    {
#pragma unroll
        for (int j = 0; j < ITEMS; ++j) v[j] = t0 + j < L ? mg_load(row + (long long)(t0 + j) * st) : 0.f;
    }
}

__device__ __forceinline__ void store_run(mg_in_t* row, long long st, int t0, int L, bool vec, const float* v)
{
    if (vec && t0 + ITEMS <= L)
    {
#pragma unroll
        for (int j = 0; j < ITEMS; j += VEC) store_vec(row + t0 + j, v + j);
    }
    else
    {
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
            if (t0 + j < L) mg_store(row + (long long)(t0 + j) * st, v[j]);
    }
}

// Input at time t < L (may be negative) of row (b, c).
__device__ __forceinline__ float input_at(const mg_in_t* x_row, long long st, const float* state_in, int b, int c, int t)
{
    if (t >= 0) return mg_load(x_row + (long long)t * st);
    if (state_in == nullptr || t < -HALO) return 0.f;
    return state_in[((long long)b * ED + c) * K + K + t];
}

// The part of both passes before their own work: the row's weights and bias, and the lane's input window
// in[0 … WINDOW) = x[t0 − K + 1 … t0 + ITEMS − 1] (0 past L), its halo from the previous lane. Every lane of the
// warp must call it (shuffles).
struct Window
{
    float wk[K];
    float b0;
    float in[WINDOW + HALO];   // the last HALO are filled only where a lane needs the inputs after its run
};

__device__ __forceinline__ void load_window(const mg_in_t* x_row, long long st, const float* __restrict__ w,
                                            const float* __restrict__ bias, const float* state_in, const Run& r,
                                            int L, bool vec, Window& win)
{
#pragma unroll
    for (int k = 0; k < K; ++k) win.wk[k] = w[r.c * K + k];
    win.b0 = MAMBA_HAS_CONV_BIAS ? bias[r.c] : 0.f;
    load_run(x_row, st, r.t0, L, vec, win.in + HALO);
    const bool lane0 = (threadIdx.x & 31) == 0;
#pragma unroll
    for (int i = 0; i < HALO; ++i)
    {
        const float from_previous = __shfl_up_sync(0xffffffffu, win.in[ITEMS + i], 1);
        const int t = r.t0 - HALO + i;
        win.in[i] = lane0 ? (t < L ? input_at(x_row, st, state_in, r.b, r.c, t) : 0.f) : from_previous;
    }
}

// pre at window position j (time t0 + j): bias, then the taps oldest first.
__device__ __forceinline__ float pre_at(const Window& win, int j)
{
    float acc = win.b0;
#pragma unroll
    for (int k = 0; k < K; ++k) acc = fmaf(win.wk[k], win.in[j + k], acc);
    return acc;
}
}

// Forward: out = silu(pre). conv_state_out (may be null) receives the last K inputs.
extern "C" __global__ void mamba_conv_fwd(const mg_in_t* __restrict__ x, long long sb, long long sc, long long st,
                                          const float* __restrict__ w, const float* __restrict__ bias,
                                          const float* __restrict__ state_in, mg_in_t* __restrict__ out,
                                          float* __restrict__ state_out, int batch, int L)
{
    using namespace mg_conv;
    const bool x_vec = vectorizable(x, sb, sc, st, L), out_vec = vectorizable(out, (long long)ED * L, L, 1, L);
    const long long segments = segments_per_row(L);
    const long long tasks = (long long)batch * ED * segments;
    for (long long task = first_task(); task < tasks; task += task_stride())
    {
        const Run r = run_of(task, segments);
        const mg_in_t* x_row = x + r.b * sb + r.c * sc;
        Window win;
        load_window(x_row, st, w, bias, state_in, r, L, x_vec, win);
        float o[ITEMS];
#pragma unroll
        for (int j = 0; j < ITEMS; ++j) o[j] = mg_silu(pre_at(win, j));
        store_run(out + ((long long)r.b * ED + r.c) * L, 1, r.t0, L, out_vec, o);
    }
    if (state_out == nullptr) return;
    const long long states = (long long)batch * ED * K;
    const long long first = first_task() * blockDim.x + threadIdx.x, stride = task_stride() * blockDim.x;
    for (long long i = first; i < states; i += stride)
    {
        const int k = (int)(i % K);
        const long long bc = i / K;
        const int c = (int)(bc % ED), b = (int)(bc / ED);
        const int t = L - K + k;
        state_out[i] = input_at(x + b * sb + c * sc, st, state_in, b, c, t);
    }
}

// Backward, one pass: dx (through x's strides) and per (row, segment) partial sums of dw and dbias:
// part[((b·segments + segment)·ED + c)·(K + 1) + k], k < K for dw[c, k], k = K for dbias[c]. Block size as launched
// for the forward (the segments follow from it).
extern "C" __global__ void mamba_conv_bwd(const mg_in_t* __restrict__ x, long long sb, long long sc, long long st,
                                          const float* __restrict__ w, const float* __restrict__ bias,
                                          const float* __restrict__ state_in, const mg_in_t* __restrict__ dout,
                                          mg_in_t* __restrict__ dx, float* __restrict__ part, int batch, int L)
{
    using namespace mg_conv;
    __shared__ float warp_sums[32][K + 1];
    const bool x_vec = vectorizable(x, sb, sc, st, L) && vectorizable(dx, sb, sc, st, L);   // dx has x's strides
    const bool dout_vec = vectorizable(dout, (long long)ED * L, L, 1, L);
    const long long segments = segments_per_row(L);
    const long long tasks = (long long)batch * ED * segments;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (long long task = first_task(); task < tasks; task += task_stride())
    {
        const Run r = run_of(task, segments);
        const mg_in_t* x_row = x + r.b * sb + r.c * sc;
        const mg_in_t* dout_row = dout + ((long long)r.b * ED + r.c) * L;
        Window win;
        load_window(x_row, st, w, bias, state_in, r, L, x_vec, win);
        // g[0 … ITEMS) = dpre of the run (0 past L), g[ITEMS …) = dpre of the HALO steps after it.
        float g[ITEMS + HALO];
        load_run(dout_row, 1, r.t0, L, dout_vec, g);
        float acc[K + 1];
#pragma unroll
        for (int k = 0; k <= K; ++k) acc[k] = 0.f;
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
        {
            g[j] *= mg_silu_grad(pre_at(win, j));
#pragma unroll
            for (int k = 0; k < K; ++k) acc[k] = fmaf(g[j], win.in[j + k], acc[k]);
            acc[K] += g[j];
        }
#pragma unroll
        for (int i = 0; i < HALO; ++i) g[ITEMS + i] = __shfl_down_sync(0xffffffffu, g[i], 1);
        if (lane == 31)
        {
            // The next lane's first HALO steps belong to the next warp: recompute their dpre from memory.
#pragma unroll
            for (int i = 0; i < HALO; ++i)
            {
                const int t = r.t0 + ITEMS + i;
                win.in[WINDOW + i] = t < L ? mg_load(x_row + (long long)t * st) : 0.f;
            }
#pragma unroll
            for (int i = 0; i < HALO; ++i)
            {
                const int t = r.t0 + ITEMS + i;
                g[ITEMS + i] = t < L ? mg_load(dout_row + t) * mg_silu_grad(pre_at(win, ITEMS + i)) : 0.f;
            }
        }
        float d[ITEMS];
#pragma unroll
        for (int j = 0; j < ITEMS; ++j)
        {
            float s = 0.f;
#pragma unroll
            for (int k = 0; k < K; ++k) s = fmaf(win.wk[k], g[j + HALO - k], s);
            d[j] = s;
        }
        store_run(dx + r.b * sb + r.c * sc, st, r.t0, L, x_vec, d);
        // The block's sums over its segment: warp butterflies, then warp order.
#pragma unroll
        for (int k = 0; k <= K; ++k)
        {
            const float v = mg_warp_sum(acc[k]);
            if (lane == 0) warp_sums[warp][k] = v;
        }
        __syncthreads();
        if (threadIdx.x <= K)
        {
            float total = 0.f;
            for (int i = 0; i < (int)(blockDim.x >> 5); ++i) total += warp_sums[i][threadIdx.x];
            const long long segment = task % segments;
            part[(((long long)r.b * segments + segment) * ED + r.c) * (K + 1) + threadIdx.x] = total;
        }
        __syncthreads();
    }
}

// dw[c, k] and dbias[c] (may be null): the backward's `parts` partials (batch·segments) added in order.
extern "C" __global__ void mamba_conv_bwd_weights(const float* __restrict__ part, float* __restrict__ dw,
                                                  float* __restrict__ dbias, int parts)
{
    using namespace mg_conv;
    constexpr int COUNT = ED * (K + 1);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < COUNT; i += gridDim.x * blockDim.x)
    {
        float total = 0.f;
        for (int p = 0; p < parts; ++p) total += part[(long long)p * COUNT + i];
        const int c = i / (K + 1), k = i - c * (K + 1);
        if (k < K) dw[c * K + k] = total;
        else if (dbias != nullptr) dbias[c] = total;
    }
}
