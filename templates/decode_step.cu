// One-token decode step of a Mamba model. Three launch plans share the per-row and per-channel routines below:
//
// Small batches (≤ MAMBA_DECODE_MAX_BATCH sequences), four kernels per layer, no cuBLAS:
//   mamba_decode_in_proj:  r = r_in + mixer_out (the embedding rows for the first layer); normed = RMSNorm(r)·w in
//                          shared memory; xz = normed·W_inᵀ (+ bias), one weight row per warp; the x rows go straight
//                          through the causal conv (state shifted in place) and SiLU → xc; the z rows are stored.
//   mamba_decode_rows:     out = in·Wᵀ (+ bias) over a depth of ED: x_proj (→ dt_low, B, C) and out_proj.
//   mamba_decode_ssm_step: Δ = softplus(dt_low·W_dtᵀ + b_dt) per channel, then the state update below.
//   (after the last layer) mamba_decode_head: the final norm and logits = normed·Eᵀ.
// The same small batches in one launch: mamba_decode_persistent, one block per multiprocessor, does the same work
// phase by phase with a grid barrier where those kernels end.
//
// Every weight is read once per step, whatever the batch: a warp loads 16-byte packs of its row into registers
// (issued before the shared input is ready, so the loads overlap the norm) and dots them with each sequence's input.
// The matrices the rows walk (in_proj, x_proj, out_proj, the head) are in the build's product type, mg_in_t: fp32, or
// in the bf16 build the bf16 weight copy, 8 weights per pack, which halves the bytes a step reads; with
// MAMBA_DECODE_F16 an fp16 copy instead. Their inputs, the sums, the states and the residual stream stay fp32 in
// every build.
//
// Larger batches: cuBLAS products around mamba_decode_conv and mamba_decode_ssm (x_t and z read with a row stride so
// both can point into in_proj's (batch, 2·ED) output; B/C with a row stride into x_dbl; dt with its own stride). Their
// activations are mg_in_t, as in the forward pass: bf16 operands of tensor-core products in the bf16 build.
//
// Both end with mamba_decode_argmax (the greedy pick on the device). A is passed as A·log2 e, as in the scan.
// The fused kernels may be launched to overlap their predecessor (programmatic dependent launch, sm_90+): each issues
// its weight loads first and executes griddepcontrol.wait before touching activations or states.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_D_MODEL
#define MAMBA_D_MODEL 768
#endif
#ifndef MAMBA_D_STATE
#define MAMBA_D_STATE 16
#endif
#ifndef MAMBA_D_INNER
#define MAMBA_D_INNER 1536
#endif
#ifndef MAMBA_DT_RANK
#define MAMBA_DT_RANK 48
#endif
#ifndef MAMBA_CONV_K
#define MAMBA_CONV_K 4
#endif
#ifndef MAMBA_VOCAB
#define MAMBA_VOCAB 50280
#endif
#ifndef MAMBA_NORM_EPS
#define MAMBA_NORM_EPS 1e-5f
#endif
#ifndef MAMBA_HAS_CONV_BIAS
#define MAMBA_HAS_CONV_BIAS 1
#endif
#ifndef MAMBA_SELECTIVE_DELTA
#define MAMBA_SELECTIVE_DELTA 1
#endif
#ifndef MAMBA_SELECTIVE_B
#define MAMBA_SELECTIVE_B 1
#endif
#ifndef MAMBA_SELECTIVE_C
#define MAMBA_SELECTIVE_C 1
#endif
#ifndef MAMBA_HAS_Z
#define MAMBA_HAS_Z 1
#endif
// Sequences the fused kernels take at once (each warp keeps one accumulator per sequence).
#ifndef MAMBA_DECODE_MAX_BATCH
#define MAMBA_DECODE_MAX_BATCH 8
#endif
// Threads per block of the fused kernels (whole warps); each warp owns one weight row at a time.
#ifndef MAMBA_DECODE_THREADS
#define MAMBA_DECODE_THREADS 128
#endif
// 16-byte weight packs each lane keeps in flight.
#ifndef MAMBA_DECODE_PACKS
#define MAMBA_DECODE_PACKS 8
#endif
#ifndef MAMBA_ARGMAX_THREADS
#define MAMBA_ARGMAX_THREADS 256
#endif
// Threads per block of the persistent kernel (one block per multiprocessor).
#ifndef MAMBA_DECODE_PERSISTENT_THREADS
#define MAMBA_DECODE_PERSISTENT_THREADS 512
#endif

// Launch facts for the host: largest fused batch, fused block size, argmax block size, persistent block size.
extern "C" __constant__ int mamba_decode_config[4] = {MAMBA_DECODE_MAX_BATCH, MAMBA_DECODE_THREADS, MAMBA_ARGMAX_THREADS,
                                                      MAMBA_DECODE_PERSISTENT_THREADS};

#if MAMBA_SELECTIVE_B
typedef mg_in_t mg_decode_b_t;
#else
typedef float mg_decode_b_t;
#endif
#if MAMBA_SELECTIVE_C
typedef mg_in_t mg_decode_c_t;
#else
typedef float mg_decode_c_t;
#endif

// 1: the fused kernels read fp16 matrices, a build of the same source that only the small-batch decode step loads
// (CudaMambaModel.DecodeWeights); 0: the build's product type, mg_in_t.
#ifndef MAMBA_DECODE_F16
#define MAMBA_DECODE_F16 0
#endif

// Raw fp16 bits: a type of its own, so the weight packs know how to widen them.
struct mg_f16
{
    unsigned short bits;
};

__device__ __forceinline__ float mg_f16_to_f32(unsigned short bits)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(bits));
    return f;
}

// The weight type of the fused row products.
#if MAMBA_DECODE_F16
typedef mg_f16 mg_decode_w_t;
#else
typedef mg_in_t mg_decode_w_t;
#endif

namespace mg_decode {
constexpr int D = MAMBA_D_MODEL, ED = MAMBA_D_INNER, N = MAMBA_D_STATE, R = MAMBA_DT_RANK, K = MAMBA_CONV_K;
constexpr int XR = (MAMBA_SELECTIVE_DELTA ? R : 0) + (MAMBA_SELECTIVE_B ? N : 0) + (MAMBA_SELECTIVE_C ? N : 0);
constexpr int MAXB = MAMBA_DECODE_MAX_BATCH;
constexpr int PACKS = MAMBA_DECODE_PACKS;

// Activations are read from L2 (ld.global.cg). In the persistent kernel another block wrote them earlier in the same
// launch, and the per-multiprocessor L1 is not kept coherent: a line cached there before a grid barrier could be stale
// after it. Volatile with a memory clobber, so no load is merged with or moved across another phase's.
__device__ __forceinline__ float load_activation(const float* p)
{
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ float load_activation(const mg_bf16* p)
{
    unsigned short v;
    asm volatile("ld.global.cg.u16 %0, [%1];" : "=h"(v) : "l"(p) : "memory");
    return mg_bf16_to_f32(v);
}

// An activation as the kernels read it: in the persistent kernel (COHERENT) through load_activation; in the per-step
// kernels, which read what an earlier launch wrote, as a plain load, which the compiler may batch and move ahead of
// other loads and stores (a memory clobber between them serialises, e.g., one copy into shared memory per sequence).
template <bool COHERENT, typename T>
__device__ __forceinline__ float read_activation(const T* p)
{
    if constexpr (COHERENT) return load_activation(p);
    else return mg_load(p);
}

// Shifts one channel's conv history (K values in registers, newest last) left, appends `newest` and returns SiLU of
// the depthwise convolution with taps w (+ bias).
__device__ __forceinline__ float conv_step(float (&hist)[K], const float (&w)[K], float bias, float newest)
{
    float acc = bias;
#pragma unroll
    for (int k = 0; k < K - 1; ++k)
    {
        hist[k] = hist[k + 1];
        acc = fmaf(w[k], hist[k], acc);
    }
    hist[K - 1] = newest;
    acc = fmaf(w[K - 1], newest, acc);
    return mg_silu(acc);
}

// Channel c's taps and bias (0 without a conv bias).
__device__ __forceinline__ void load_conv_taps(const float* __restrict__ w, const float* __restrict__ bias, int c, float (&taps)[K], float& b)
{
#pragma unroll
    for (int k = 0; k < K; ++k) taps[k] = w[c * K + k];
    b = MAMBA_HAS_CONV_BIAS ? bias[c] : 0.f;
}

// A thread's own row of LENGTH floats (a row of A, of dt_proj, a channel's state). A warp's lanes read 32 different
// rows, so each load instruction touches 32 cache lines: rows that start on 16-byte boundaries are moved in 16-byte
// pieces, a quarter of the instructions.
template <int LENGTH>
__device__ __forceinline__ bool quad_aligned(const float* row)
{
    return LENGTH % 4 == 0 && ((unsigned long long)row & 15ull) == 0;
}

template <int LENGTH>
__device__ __forceinline__ void load_row(const float* __restrict__ row, float (&out)[LENGTH])
{
    if (quad_aligned<LENGTH>(row))
    {
#pragma unroll
        for (int k = 0; k < LENGTH / 4; ++k)
        {
            const float4 v = reinterpret_cast<const float4*>(row)[k];
            out[4 * k] = v.x;
            out[4 * k + 1] = v.y;
            out[4 * k + 2] = v.z;
            out[4 * k + 3] = v.w;
        }
    }
    else
    {
#pragma unroll
        for (int k = 0; k < LENGTH; ++k) out[k] = row[k];
    }
}

template <int LENGTH>
__device__ __forceinline__ void store_row(float* __restrict__ row, const float (&in)[LENGTH])
{
    if (quad_aligned<LENGTH>(row))
    {
#pragma unroll
        for (int k = 0; k < LENGTH / 4; ++k)
            reinterpret_cast<float4*>(row)[k] = make_float4(in[4 * k], in[4 * k + 1], in[4 * k + 2], in[4 * k + 3]);
    }
    else
    {
#pragma unroll
        for (int k = 0; k < LENGTH; ++k) row[k] = in[k];
    }
}

// h = h·exp(Δ·A) + Δ·x·B ; y = h·C + D·x ; y ⊙= silu(z) for channel c of sequence b (state h: N floats).
// B/C rows of a sequence start at b·bc_row_stride (selective) or are the (ED, N) parameters.
// a2: the channel's row of A·log2 e. COHERENT: see read_activation. Every load is issued before the first state
// is updated and the state is stored after the last: interleaved, each store would hold the next state's loads back
// (the compiler cannot tell the state from B and C), N memory round trips in a row.
template <bool COHERENT, typename BT, typename CT>
__device__ __forceinline__ float ssm_channel(float delta, float x, long long b, int c, const float (&a2)[N],
                                             const BT* __restrict__ Bm, const CT* __restrict__ Cm,
                                             long long bc_row_stride, float d, float z, float* __restrict__ h)
{
    float hv[N], bv[N], cv[N];
#pragma unroll
    for (int n = 0; n < N; ++n)
    {
#if MAMBA_SELECTIVE_B
        bv[n] = read_activation<COHERENT>(Bm + b * bc_row_stride + n);
#else
        bv[n] = Bm[c * N + n];
#endif
#if MAMBA_SELECTIVE_C
        cv[n] = read_activation<COHERENT>(Cm + b * bc_row_stride + n);
#else
        cv[n] = Cm[c * N + n];
#endif
    }
    load_row<N>(h, hv);
    const float dx = delta * x;
    float out = 0.f;
#pragma unroll
    for (int n = 0; n < N; ++n)
    {
        hv[n] = fmaf(mg_exp2(a2[n] * delta), hv[n], dx * bv[n]);
        out = fmaf(cv[n], hv[n], out);
    }
    store_row<N>(h, hv);
    out = fmaf(d, x, out);
#if MAMBA_HAS_Z
    out *= mg_silu(z);
#endif
    return out;
}

// One weight as fp32.
__device__ __forceinline__ float widen(float w) { return w; }
__device__ __forceinline__ float widen(mg_bf16 w) { return mg_bf16_to_f32(w); }
__device__ __forceinline__ float widen(mg_f16 w) { return mg_f16_to_f32(w.bits); }

// 16 bytes of weights, converted to fp32 on use.
template <typename W> struct Pack;

template <> struct Pack<float>
{
    static constexpr int COUNT = 4;
    float v[4];
    __device__ __forceinline__ void load(const float* p)
    {
        asm("ld.global.nc.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3]) : "l"(p));
    }
    __device__ __forceinline__ float at(int i) const { return v[i]; }
};

template <> struct Pack<mg_f16>
{
    static constexpr int COUNT = 8;
    unsigned int v[4];
    __device__ __forceinline__ void load(const mg_f16* p)
    {
        asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3]) : "l"(p));
    }
    __device__ __forceinline__ float at(int i) const
    {
        const unsigned int word = v[i >> 1];
        return mg_f16_to_f32((unsigned short)((i & 1) ? word >> 16 : word & 0xffffu));
    }
};

template <> struct Pack<mg_bf16>
{
    static constexpr int COUNT = 8;
    unsigned int v[4];
    __device__ __forceinline__ void load(const mg_bf16* p)
    {
        asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3]) : "l"(p));
    }
    __device__ __forceinline__ float at(int i) const
    {
        const unsigned int word = v[i >> 1];
        return __uint_as_float((i & 1) ? (word & 0xffff0000u) : (word << 16));
    }
};

// One warp's pass over a weight row of DEPTH elements against up to MAXB fp32 input rows in shared memory (row
// stride DEPTH). The row is cut into segments of 32·LANE_PACKS packs; load() issues a segment's loads (lane l takes
// packs l, l + 32, ...), accumulate() folds them into the lane's partial sums. With `vectorized` false (a depth or a
// row address that does not allow 16-byte packs) the row is read one element per lane instead.
template <typename W, int DEPTH> struct RowReader
{
    static constexpr int COUNT = Pack<W>::COUNT;
    static constexpr bool PACKABLE = DEPTH % COUNT == 0;
    static constexpr int ROW_PACKS = DEPTH / COUNT;
    // No more packs in flight per lane than a row has: registers a short row would leave idle cap the resident warps.
    static constexpr int LANE_PACKS = (ROW_PACKS + 31) / 32 < PACKS ? (ROW_PACKS + 31) / 32 : PACKS;
    static constexpr int SEGMENTS = (ROW_PACKS + 32 * LANE_PACKS - 1) / (32 * LANE_PACKS);
    Pack<W> pack[LANE_PACKS];

    __device__ __forceinline__ void load(const W* __restrict__ row, int segment, int lane)
    {
#pragma unroll
        for (int i = 0; i < LANE_PACKS; ++i)
        {
            const int p = (segment * LANE_PACKS + i) * 32 + lane;
            if (p < ROW_PACKS) pack[i].load(row + (long long)p * COUNT);
        }
    }

    __device__ __forceinline__ void accumulate(const float* __restrict__ x, int batch, int segment, int lane, float (&acc)[MAXB]) const
    {
#pragma unroll
        for (int i = 0; i < LANE_PACKS; ++i)
        {
            const int p = (segment * LANE_PACKS + i) * 32 + lane;
            if (p >= ROW_PACKS) break;
#pragma unroll
            for (int s = 0; s < MAXB; ++s)
            {
                if (s >= batch) break;
                // 16-byte aligned: the shared base is, and DEPTH and p·COUNT are multiples of 4 here.
                const float4* xs = reinterpret_cast<const float4*>(x + s * DEPTH + p * COUNT);
#pragma unroll
                for (int q = 0; q < COUNT / 4; ++q)
                {
                    const float4 v = xs[q];
                    acc[s] = fmaf(pack[i].at(4 * q), v.x, acc[s]);
                    acc[s] = fmaf(pack[i].at(4 * q + 1), v.y, acc[s]);
                    acc[s] = fmaf(pack[i].at(4 * q + 2), v.z, acc[s]);
                    acc[s] = fmaf(pack[i].at(4 * q + 3), v.w, acc[s]);
                }
            }
        }
    }

    // The whole row for every sequence, reduced over the warp (every lane gets every sum). When `preloaded`,
    // segment 0 is already in the registers; when `next` is not null, the next row's segment 0 is loaded before
    // the reduction, so its latency overlaps the caller's epilogue.
    __device__ __forceinline__ void dot(const W* __restrict__ row, const W* __restrict__ next, bool preloaded, bool vectorized,
                                        const float* __restrict__ x, int batch, int lane, float (&acc)[MAXB])
    {
#pragma unroll
        for (int s = 0; s < MAXB; ++s) acc[s] = 0.f;
        if (PACKABLE && vectorized)
        {
            for (int segment = 0; segment < SEGMENTS; ++segment)
            {
                if (segment > 0 || !preloaded) load(row, segment, lane);
                accumulate(x, batch, segment, lane, acc);
            }
            if (next != nullptr) load(next, 0, lane);
        }
        else
        {
            for (int j = lane; j < DEPTH; j += 32)
            {
                const float w = widen(row[j]);
#pragma unroll
                for (int s = 0; s < MAXB; ++s)
                    if (s < batch) acc[s] = fmaf(w, x[s * DEPTH + j], acc[s]);
            }
        }
#pragma unroll
        for (int s = 0; s < MAXB; ++s)
            if (s < batch) acc[s] = mg_warp_sum(acc[s]);
    }
};

// Whether a row-major (rows, depth) matrix at `w` can be read in 16-byte packs.
template <typename W>
__device__ __forceinline__ bool packable(const W* w) { return ((unsigned long long)w & 15ull) == 0; }

// normed (batch, D) in shared memory = RMSNorm(r)·w with r = (tokens ? embedding[tokens[s]] : r_in[s]) + addend[s]
// (addend may be null). Block 0 also stores r in r_out when r_out is not null. Every thread of a block of T threads
// must call it. All loads are issued before any is used and the batch's sums of squares share one block reduction,
// so the prologue costs one memory round trip, not one per column slice and sequence. COHERENT: see read_activation.
template <int T, bool COHERENT>
__device__ __forceinline__ void norm_into_shared(const int* __restrict__ tokens, const float* __restrict__ embedding,
                                                 const float* __restrict__ r_in, const float* __restrict__ addend,
                                                 const float* __restrict__ w, float* __restrict__ r_out,
                                                 float* __restrict__ normed, int batch)
{
    constexpr int PER = (D + T - 1) / T, WARPS = T / 32;
    __shared__ float partial[WARPS][MAXB];
    const bool keep = r_out != nullptr && blockIdx.x == 0;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float v[MAXB][PER], nw[PER], ss[MAXB];
#pragma unroll
    for (int i = 0; i < PER; ++i)
    {
        const int j = threadIdx.x + i * T;
        nw[i] = j < D ? w[j] : 0.f;
    }
#pragma unroll
    for (int s = 0; s < MAXB; ++s)
    {
        ss[s] = 0.f;
        if (s >= batch) break;
        const float* token_row = tokens != nullptr ? embedding + (long long)tokens[s] * D : nullptr;
#pragma unroll
        for (int i = 0; i < PER; ++i)
        {
            const int j = threadIdx.x + i * T;
            if (j >= D) { v[s][i] = 0.f; continue; }
            v[s][i] = token_row != nullptr ? token_row[j] : read_activation<COHERENT>(r_in + (long long)s * D + j);
            if (addend != nullptr) v[s][i] += read_activation<COHERENT>(addend + (long long)s * D + j);
        }
    }
#pragma unroll
    for (int s = 0; s < MAXB; ++s)
    {
        if (s >= batch) break;
#pragma unroll
        for (int i = 0; i < PER; ++i) ss[s] = fmaf(v[s][i], v[s][i], ss[s]);
        ss[s] = mg_warp_sum(ss[s]);
        if (lane == 0) partial[warp][s] = ss[s];
    }
    __syncthreads();
#pragma unroll
    for (int s = 0; s < MAXB; ++s)
    {
        if (s >= batch) break;
        float total = 0.f;
#pragma unroll
        for (int k = 0; k < WARPS; ++k) total += partial[k][s];
        const float rstd = rsqrtf(total / D + MAMBA_NORM_EPS);
#pragma unroll
        for (int i = 0; i < PER; ++i)
        {
            const int j = threadIdx.x + i * T;
            if (j >= D) break;
            if (keep) r_out[(long long)s * D + j] = v[s][i];
            normed[s * D + j] = v[s][i] * rstd * nw[i];
        }
    }
    __syncthreads();
}

// Copies batch rows of ED floats into shared memory, every load issued before the first store (a block of T threads).
// COHERENT: see read_activation.
template <int T, bool COHERENT>
__device__ __forceinline__ void rows_into_shared(const float* in, float* __restrict__ x, int batch)
{
    constexpr int PER = (ED + T - 1) / T;
#pragma unroll
    for (int s = 0; s < MAXB; ++s)
    {
        if (s >= batch) break;
        float v[PER];
#pragma unroll
        for (int i = 0; i < PER; ++i)
        {
            const int j = threadIdx.x + i * T;
            v[i] = j < ED ? read_activation<COHERENT>(in + (long long)s * ED + j) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < PER; ++i)
        {
            const int j = threadIdx.x + i * T;
            if (j < ED) x[s * ED + j] = v[i];
        }
    }
    __syncthreads();
}

// Programmatic dependent launch (sm_90 and later). A fused kernel first lets the next kernel of the stream be
// scheduled, then issues the loads that read only weights, and waits for the previous kernel (its completion and the
// visibility of its writes) before it reads or writes any activation or state. Both are no-ops for a plain launch.
__device__ __forceinline__ void allow_next_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_previous_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Issues the loads of row `first`'s segment 0 of a row-major (rows, DEPTH) matrix, when it is read in packs and the
// row exists: what a row loop below expects to find in its reader.
template <int DEPTH>
__device__ __forceinline__ void preload_row(RowReader<mg_decode_w_t, DEPTH>& reader, const mg_decode_w_t* __restrict__ w, int first, int rows,
                                            bool vectorized, int lane)
{
    if (RowReader<mg_decode_w_t, DEPTH>::PACKABLE && vectorized && first < rows) reader.load(w + (long long)first * DEPTH, 0, lane);
}

// out[s·rows + row] = x[s]·w[row] (+ bias[row]) for the rows first, first + stride, ... of a row-major (rows, DEPTH)
// matrix against batch input rows in shared memory (one row per warp at a time); `reader` holds the first row's
// segment 0 (preload_row).
template <int DEPTH>
__device__ __forceinline__ void product_rows(RowReader<mg_decode_w_t, DEPTH>& reader, int first, int stride, bool vectorized, int rows,
                                             const float* __restrict__ x, const mg_decode_w_t* __restrict__ w,
                                             const float* __restrict__ bias, float* __restrict__ out, int batch, int lane)
{
    float acc[MAXB];
    for (int row = first; row < rows; row += stride)
    {
        const float b = bias != nullptr && lane < batch ? bias[row] : 0.f;
        const int next = row + stride;
        reader.dot(w + (long long)row * DEPTH, next < rows ? w + (long long)next * DEPTH : nullptr, true, vectorized, x, batch, lane, acc);
#pragma unroll
        for (int s = 0; s < MAXB; ++s)
            if (s == lane && s < batch) out[(long long)s * rows + row] = acc[s] + b;
    }
}

// The in_proj rows first, first + stride, ... of W_in (2·ED, D) against normed (batch, D) in shared memory; `reader`
// holds the first row's segment 0. Rows [0, ED) are x: conv + SiLU into xc (batch, ED), the conv state shifted in
// place; rows [ED, 2·ED) are z, stored in xz (batch, 2·ED). Lane s < batch finishes sequence s of a row (its conv
// inputs are loaded before the dot, so their latency hides behind it).
__device__ __forceinline__ void in_proj_rows(RowReader<mg_decode_w_t, D>& reader, int first, int stride, bool vectorized,
                                             const float* __restrict__ normed, const mg_decode_w_t* __restrict__ w_in,
                                             const float* __restrict__ in_bias, float* __restrict__ conv_state,
                                             const float* __restrict__ conv_w, const float* __restrict__ conv_bias,
                                             float* __restrict__ xc, float* __restrict__ xz, int batch, int lane)
{
    constexpr int rows = 2 * ED;
    float acc[MAXB];
    for (int row = first; row < rows; row += stride)
    {
        const bool conv_row = row < ED;
        const bool finishes = lane < batch;
        float taps[K], tap_bias = 0.f, hist[K], bias = 0.f;
        float* st = conv_state + ((long long)lane * ED + row) * K;
        if (finishes)
        {
            if (in_bias != nullptr) bias = in_bias[row];
            if (conv_row)
            {
                load_conv_taps(conv_w, conv_bias, row, taps, tap_bias);
#pragma unroll
                for (int k = 0; k < K; ++k) hist[k] = st[k];
            }
        }
        const int next = row + stride;
        reader.dot(w_in + (long long)row * D, next < rows ? w_in + (long long)next * D : nullptr, true, vectorized, normed, batch, lane, acc);
        float mine = 0.f;
#pragma unroll
        for (int s = 0; s < MAXB; ++s)
            if (s == lane) mine = acc[s];
        if (!finishes) continue;
        const float v = mine + bias;
        if (conv_row)
        {
            xc[(long long)lane * ED + row] = conv_step(hist, taps, tap_bias, v);
#pragma unroll
            for (int k = 0; k < K; ++k) st[k] = hist[k];
        }
        else xz[(long long)lane * 2 * ED + row] = v;
    }
}

// A channel's per-step parameters, loaded ahead of the activations they meet: its row of A·log2 e, D, Δ's bias and,
// when Δ is selective, its row of dt_proj.
struct ChannelParameters
{
    float a2[N], d, dt_bias;
#if MAMBA_SELECTIVE_DELTA
    float wd[R];
#endif

    __device__ __forceinline__ void load(int c, const float* __restrict__ A2, const float* __restrict__ Dv,
                                         const float* __restrict__ b_dt, const float* __restrict__ w_dt)
    {
        load_row<N>(A2 + (long long)c * N, a2);
        d = Dv[c];
        dt_bias = b_dt[c];
#if MAMBA_SELECTIVE_DELTA
        load_row<R>(w_dt + (long long)c * R, wd);
#endif
    }
};

// y of item i = b·ED + c (sequence b, channel c): Δ from x_dbl's dt_low and dt_proj's row (or softplus(b_dt) when Δ
// is not selective), then the state update. x_dbl rows (batch, XR) hold [dt_low | B | C] for the selective parts;
// Bp / Cp are the (ED, N) parameters of the parts that are not. COHERENT: see read_activation.
template <bool COHERENT>
__device__ __forceinline__ float ssm_item(const ChannelParameters& p, long long i, const float* xc, const float* x_dbl,
                                          const float* __restrict__ Bp, const float* __restrict__ Cp, const float* xz,
                                          float* __restrict__ ssm_state)
{
    const int c = (int)(i % ED);
    const long long b = i / ED;
#if MAMBA_SELECTIVE_DELTA
    const float* row = x_dbl + b * XR;
    float dt = p.dt_bias;
#pragma unroll
    for (int r = 0; r < R; ++r) dt = fmaf(p.wd[r], read_activation<COHERENT>(row + r), dt);
    const float delta = mg_softplus(dt);
    constexpr int B_COLUMN = R;
#else
    const float delta = mg_softplus(p.dt_bias);
    constexpr int B_COLUMN = 0;
#endif
    constexpr int C_COLUMN = B_COLUMN + (MAMBA_SELECTIVE_B ? N : 0);
    const float* Bm = MAMBA_SELECTIVE_B ? x_dbl + B_COLUMN : Bp;
    const float* Cm = MAMBA_SELECTIVE_C ? x_dbl + C_COLUMN : Cp;
    const float zv = MAMBA_HAS_Z ? read_activation<COHERENT>(xz + b * 2 * ED + ED + c) : 0.f;
    return ssm_channel<COHERENT>(delta, read_activation<COHERENT>(xc + i), b, c, p.a2, Bm, Cm, XR, p.d, zv, ssm_state + i * N);
}

// Waits until every block of the grid has arrived (the grid is launched cooperatively, so all of it is resident);
// what any block wrote before is visible to every block after. `arrivals` counts every block's arrivals since the
// launch began (the host zeroes it before each launch) and `expected` is this block's running total to wait for:
// one release-add and acquire-polling by one thread per block, no reset, no second round trip.
__device__ __forceinline__ void grid_barrier(unsigned int* arrivals, unsigned int& expected)
{
    expected += gridDim.x;
    __syncthreads();
    if (threadIdx.x == 0)
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" :: "l"(arrivals) : "memory");
        unsigned int seen;
        do asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(seen) : "l"(arrivals) : "memory");
        while (seen < expected);
#else
        __threadfence();
        atomicAdd(arrivals, 1u);
        while (*(volatile unsigned int*)arrivals < expected) { }
        __threadfence();
#endif
    }
    __syncthreads();
}

// Layer l's parameters and state as the persistent kernel reads them (null where the variant has no such part); the
// host writes this table once per decode state, 16 pointers per layer in this order.
struct DecodeLayer
{
    const float* norm;
    const mg_decode_w_t* in_proj;
    const float* in_bias;
    float* conv_state;
    const float* conv_w;
    const float* conv_bias;
    const mg_decode_w_t* x_proj;
    const float* dt_w;
    const float* dt_bias;
    const float* a2;
    const float* b;
    const float* c;
    const float* d;
    float* ssm_state;
    const mg_decode_w_t* out_proj;
    const float* out_bias;
};
static_assert(sizeof(DecodeLayer) == 16 * sizeof(void*), "the host writes 16 pointers per layer");
} // namespace mg_decode

extern "C" __global__ void mamba_decode_conv(const mg_in_t* __restrict__ x_t, long long x_row_stride,
                                             float* __restrict__ conv_state, const float* __restrict__ w,
                                             const float* __restrict__ bias, mg_in_t* __restrict__ xc, int batch)
{
    using namespace mg_decode;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)batch * ED) return;
    const int c = (int)(i % ED);
    const long long b = i / ED;
    float taps[K], tap_bias, hist[K];
    load_conv_taps(w, bias, c, taps, tap_bias);
    float* st = conv_state + i * K;
#pragma unroll
    for (int k = 0; k < K; ++k) hist[k] = st[k];
    mg_store(xc + i, conv_step(hist, taps, tap_bias, mg_load(x_t + b * x_row_stride + c)));
#pragma unroll
    for (int k = 0; k < K; ++k) st[k] = hist[k];
}

extern "C" __global__ void mamba_decode_ssm(const mg_in_t* __restrict__ xc, const mg_in_t* __restrict__ dt,
                                            long long dt_row_stride, const float* __restrict__ dt_bias,
                                            const float* __restrict__ A2, const mg_decode_b_t* __restrict__ Bm,
                                            const mg_decode_c_t* __restrict__ Cm, long long bc_row_stride,
                                            const float* __restrict__ Dv, const mg_in_t* __restrict__ z,
                                            long long z_row_stride, float* __restrict__ ssm_state,
                                            mg_in_t* __restrict__ y, int batch)
{
    using namespace mg_decode;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)batch * ED) return;
    const int c = (int)(i % ED);
    const long long b = i / ED;
#if MAMBA_SELECTIVE_DELTA
    const float delta = mg_softplus(mg_load(dt + b * dt_row_stride + c) + dt_bias[c]);
#else
    const float delta = mg_softplus(dt_bias[c]);
#endif
    const float zv = MAMBA_HAS_Z ? mg_load(z + b * z_row_stride + c) : 0.f;
    float a2[N];
#pragma unroll
    for (int n = 0; n < N; ++n) a2[n] = A2[c * N + n];
    mg_store(y + i, ssm_channel<false>(delta, mg_load(xc + i), b, c, a2, Bm, Cm, bc_row_stride, Dv[c], zv, ssm_state + i * N));
}

// xz (batch, 2·ED): rows [0, ED) are x, whose conv + SiLU goes to xc (batch, ED); rows [ED, 2·ED) are z, stored.
// Dynamic shared memory: batch·D floats. Grid-stride over rows, one row per warp at a time; lane s < batch finishes
// sequence s of the row (its conv inputs are loaded before the dot, so their latency hides behind it).
extern "C" __global__ void __launch_bounds__(MAMBA_DECODE_THREADS)
mamba_decode_in_proj(const int* __restrict__ tokens, const float* __restrict__ embedding, const float* __restrict__ r_in,
                     const float* __restrict__ addend, const float* __restrict__ norm_w, float* __restrict__ r_out,
                     const mg_decode_w_t* __restrict__ w_in, const float* __restrict__ in_bias, float* __restrict__ conv_state,
                     const float* __restrict__ conv_w, const float* __restrict__ conv_bias, float* __restrict__ xc,
                     float* __restrict__ xz, int batch)
{
    using namespace mg_decode;
    extern __shared__ float4 shared4[];
    float* normed = reinterpret_cast<float*>(shared4);
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int stride = gridDim.x * warps, first = blockIdx.x * warps + (threadIdx.x >> 5);
    const bool vectorized = packable(w_in);
    allow_next_kernel();
    RowReader<mg_decode_w_t, D> reader;
    preload_row(reader, w_in, first, 2 * ED, vectorized, lane);
    wait_for_previous_kernel();
    norm_into_shared<MAMBA_DECODE_THREADS, false>(tokens, embedding, r_in, addend, norm_w, r_out, normed, batch);
    in_proj_rows(reader, first, stride, vectorized, normed, w_in, in_bias, conv_state, conv_w, conv_bias, xc, xz, batch, lane);
}

// out (batch, rows) = in (batch, ED) · Wᵀ (+ bias), W row-major (rows, ED). Dynamic shared memory: batch·ED floats.
extern "C" __global__ void __launch_bounds__(MAMBA_DECODE_THREADS)
mamba_decode_rows(const float* __restrict__ in, const mg_decode_w_t* __restrict__ w, const float* __restrict__ bias,
                  float* __restrict__ out, int rows, int batch)
{
    using namespace mg_decode;
    extern __shared__ float4 shared4[];
    float* x = reinterpret_cast<float*>(shared4);
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int stride = gridDim.x * warps, first = blockIdx.x * warps + (threadIdx.x >> 5);
    const bool vectorized = packable(w);
    allow_next_kernel();
    RowReader<mg_decode_w_t, ED> reader;
    preload_row(reader, w, first, rows, vectorized, lane);
    wait_for_previous_kernel();
    rows_into_shared<MAMBA_DECODE_THREADS, false>(in, x, batch);
    product_rows(reader, first, stride, vectorized, rows, x, w, bias, out, batch, lane);
}

// One thread per (sequence, channel): Δ and the state update (ssm_item). The channel's parameters are loaded before
// waiting for the previous kernel.
extern "C" __global__ void mamba_decode_ssm_step(const float* __restrict__ xc, const float* __restrict__ x_dbl,
                                                 const float* __restrict__ w_dt, const float* __restrict__ dt_bias,
                                                 const float* __restrict__ A2, const float* __restrict__ Bp,
                                                 const float* __restrict__ Cp, const float* __restrict__ Dv,
                                                 const float* __restrict__ xz, float* __restrict__ ssm_state,
                                                 float* __restrict__ y, int batch)
{
    using namespace mg_decode;
    allow_next_kernel();
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < (long long)batch * ED;
    ChannelParameters channel;
    channel.load(active ? (int)(i % ED) : 0, A2, Dv, dt_bias, w_dt);
    wait_for_previous_kernel();
    if (!active) return;
    y[i] = ssm_item<false>(channel, i, xc, x_dbl, Bp, Cp, xz, ssm_state);
}

// logits (batch, VOCAB) = RMSNorm(r_in + addend)·w · Eᵀ. Dynamic shared memory: batch·D floats.
extern "C" __global__ void __launch_bounds__(MAMBA_DECODE_THREADS)
mamba_decode_head(const float* __restrict__ r_in, const float* __restrict__ addend, const float* __restrict__ norm_w,
                  const mg_decode_w_t* __restrict__ head, float* __restrict__ logits, int batch)
{
    using namespace mg_decode;
    extern __shared__ float4 shared4[];
    float* normed = reinterpret_cast<float*>(shared4);
    const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    const int stride = gridDim.x * warps, first = blockIdx.x * warps + (threadIdx.x >> 5);
    const bool vectorized = packable(head);
    allow_next_kernel();
    RowReader<mg_decode_w_t, D> reader;
    preload_row(reader, head, first, MAMBA_VOCAB, vectorized, lane);
    wait_for_previous_kernel();
    norm_into_shared<MAMBA_DECODE_THREADS, false>(nullptr, nullptr, r_in, addend, norm_w, nullptr, normed, batch);
    product_rows(reader, first, stride, vectorized, MAMBA_VOCAB, normed, head, nullptr, logits, batch, lane);
}

// The whole stack of layers and the head in one launch, for up to MAMBA_DECODE_MAX_BATCH sequences: one block per
// multiprocessor (launched cooperatively), the same per-row and per-channel work as the kernels above, with a grid
// barrier where those kernels end: per layer in_proj (norm in front, conv behind) | x_proj | Δ + state update |
// out_proj, then the final norm and the head. Before each barrier a warp issues the loads of its first weight row (or
// its channel's parameters) of the next phase, so they are in flight while the slowest block finishes.
// Dynamic shared memory: batch·max(D, ED) floats. `barrier`: one word, zeroed before each launch.
extern "C" __global__ void __launch_bounds__(MAMBA_DECODE_PERSISTENT_THREADS, 1)
mamba_decode_persistent(const int* __restrict__ tokens, const float* __restrict__ embedding,
                        const mg_decode::DecodeLayer* __restrict__ layers, int layer_count, float* residual_a,
                        float* residual_b, float* mixer_out, float* xc, float* xz, float* x_dbl, float* y,
                        const float* __restrict__ norm_f, const mg_decode_w_t* __restrict__ head,
                        float* __restrict__ logits, unsigned int* barrier, int batch)
{
    using namespace mg_decode;
    constexpr int T = MAMBA_DECODE_PERSISTENT_THREADS;
    extern __shared__ float4 shared4[];
    float* x = reinterpret_cast<float*>(shared4);
    const int lane = threadIdx.x & 31;
    // Rows are dealt to the blocks first (warp w of block k takes row w·blocks + k, then every stride-th), so a
    // matrix of few rows still spreads over every multiprocessor; block k has rows exactly when k < rows.
    const int stride = gridDim.x * (T / 32), first = (threadIdx.x >> 5) * gridDim.x + blockIdx.x;
    const long long items = (long long)batch * ED, first_item = (long long)first * 32 + lane, item_stride = (long long)stride * 32;
    RowReader<mg_decode_w_t, D> d_reader;
    RowReader<mg_decode_w_t, ED> ed_reader;
    ChannelParameters channel;
    unsigned int awaited = 0;
    float* r_in = residual_a;
    float* r_out = residual_b;
    preload_row(d_reader, layers[0].in_proj, first, 2 * ED, packable(layers[0].in_proj), lane);
    for (int l = 0; l < layer_count; ++l)
    {
        const DecodeLayer& L = layers[l];
        // The first layer reads its residual rows straight from the embedding by token id.
        norm_into_shared<T, true>(l == 0 ? tokens : nullptr, embedding, r_in, l == 0 ? nullptr : mixer_out, L.norm, r_out, x, batch);
        in_proj_rows(d_reader, first, stride, packable(L.in_proj), x, L.in_proj, L.in_bias, L.conv_state, L.conv_w, L.conv_bias, xc, xz, batch, lane);
        if (XR > 0)
        {
            preload_row(ed_reader, L.x_proj, first, XR, packable(L.x_proj), lane);
            grid_barrier(barrier, awaited);
            if ((int)blockIdx.x < XR)
            {
                rows_into_shared<T, true>(xc, x, batch);
                product_rows(ed_reader, first, stride, packable(L.x_proj), XR, x, L.x_proj, nullptr, x_dbl, batch, lane);
            }
        }
        if (first_item < items) channel.load((int)(first_item % ED), L.a2, L.d, L.dt_bias, L.dt_w);
        grid_barrier(barrier, awaited);
        for (long long i = first_item; i < items; i += item_stride)
        {
            if (i != first_item) channel.load((int)(i % ED), L.a2, L.d, L.dt_bias, L.dt_w);
            y[i] = ssm_item<true>(channel, i, xc, x_dbl, L.b, L.c, xz, L.ssm_state);
        }
        preload_row(ed_reader, L.out_proj, first, D, packable(L.out_proj), lane);
        grid_barrier(barrier, awaited);
        if ((int)blockIdx.x < D)
        {
            rows_into_shared<T, true>(y, x, batch);
            product_rows(ed_reader, first, stride, packable(L.out_proj), D, x, L.out_proj, L.out_bias, mixer_out, batch, lane);
        }
        const bool last = l + 1 == layer_count;
        const mg_decode_w_t* next = last ? head : layers[l + 1].in_proj;
        preload_row(d_reader, next, first, last ? MAMBA_VOCAB : 2 * ED, packable(next), lane);
        grid_barrier(barrier, awaited);
        float* swap = r_in;
        r_in = r_out;
        r_out = swap;
    }
    norm_into_shared<T, true>(nullptr, nullptr, r_in, mixer_out, norm_f, nullptr, x, batch);
    product_rows(d_reader, first, stride, packable(head), MAMBA_VOCAB, x, head, nullptr, logits, batch, lane);
}

// out[i] = in[i] rounded to fp16 (to nearest even; beyond ±65504 it is ±inf): the matrices the fp16 decode build
// reads, made from the fp32 weights.
extern "C" __global__ void mamba_decode_to_f16(const float* __restrict__ in, unsigned short* __restrict__ out, long long count)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
    {
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(in[i]));
        out[i] = h;
    }
}

// next[s] = the first index of the largest of logits[s, 0 .. limit) (NaN never wins). Grid (parts, batch): each block
// takes a slice of the row and leaves its best in part_value / part_index (batch, parts); the last block of a row to
// finish (counted in counters[s], which it resets to 0 for the next launch) picks among the parts.
extern "C" __global__ void __launch_bounds__(MAMBA_ARGMAX_THREADS)
mamba_decode_argmax(const float* __restrict__ logits, int limit, float* __restrict__ part_value, int* __restrict__ part_index,
                    unsigned int* __restrict__ counters, int* __restrict__ next)
{
    __shared__ float best_value[MAMBA_ARGMAX_THREADS];
    __shared__ int best_index[MAMBA_ARGMAX_THREADS];
    __shared__ bool last;
    mg_decode::wait_for_previous_kernel();
    const int s = blockIdx.y, parts = gridDim.x;
    const int span = (limit + parts - 1) / parts;
    const int begin = blockIdx.x * span, end = min(limit, begin + span);
    const float* row = logits + (long long)s * MAMBA_VOCAB;
    float value = -__int_as_float(0x7f800000);
    int index = 0x7fffffff;
    for (int j = begin + threadIdx.x; j < end; j += blockDim.x)
    {
        const float v = row[j];
        if (v > value) value = v, index = j;   // ascending j per thread: ties keep the first
    }
    // Tree over the block: larger value wins, equal values keep the smaller index.
    best_value[threadIdx.x] = value;
    best_index[threadIdx.x] = index;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half >>= 1)
    {
        if (threadIdx.x < half)
        {
            const float v = best_value[threadIdx.x + half];
            const int at = best_index[threadIdx.x + half];
            if (v > best_value[threadIdx.x] || (v == best_value[threadIdx.x] && at < best_index[threadIdx.x]))
                best_value[threadIdx.x] = v, best_index[threadIdx.x] = at;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0)
    {
        part_value[s * parts + blockIdx.x] = best_value[0];
        part_index[s * parts + blockIdx.x] = best_index[0];
        __threadfence();
        last = atomicAdd(counters + s, 1u) == (unsigned int)(parts - 1);
    }
    __syncthreads();
    // The last block's first warp picks among the parts, a part per lane, then across the lanes.
    if (!last || threadIdx.x >= 32) return;
    __threadfence();
    float v0 = -__int_as_float(0x7f800000);
    int i0 = 0x7fffffff;
    for (int p = threadIdx.x; p < parts; p += 32)
    {
        const float v = ((volatile float*)part_value)[s * parts + p];
        const int at = ((volatile int*)part_index)[s * parts + p];
        if (v > v0 || (v == v0 && at < i0)) v0 = v, i0 = at;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1)
    {
        const float v = __shfl_xor_sync(0xffffffffu, v0, offset);
        const int at = __shfl_xor_sync(0xffffffffu, i0, offset);
        if (v > v0 || (v == v0 && at < i0)) v0 = v, i0 = at;
    }
    if (threadIdx.x != 0) return;
    // Every logit NaN: fall back to 0, as the host's argmax does.
    next[s] = i0 == 0x7fffffff ? 0 : i0;
    counters[s] = 0u;
}
