// Selective scan (Mamba's S6 recurrence), forward and backward, specialised at compile time.
//
//   Δ_t = softplus(dt_t + dt_bias)           (or softplus(dt_bias) per channel when Δ is not selective)
//   h_t[n] = exp(Δ_t·A[n])·h_{t−1}[n] + Δ_t·u_t·B_t[n]          (h_{−1} = 0, fp32)
//   y_t = Σ_n C_t[n]·h_t[n] + D·u_t ;  y_t ⊙= silu(z_t)
//
// Layout (contiguous): u, dt, z, y, dout, du, ddt, dz are (batch, D_INNER, L); variable B/C are (batch, N, L);
// constant B/C, A2 are (D_INNER, N) fp32; D and dt_bias are (D_INNER) fp32. A2 = A·log2 e, so each decay is one
// ex2.approx. Chunk states are (batch, D_INNER, n_chunks, N) fp32: the state after each chunk of `chunk` steps, the
// last one being the final state used to start decoding. They are all the backward needs (it recomputes the rest),
// so memory grows with N·L/chunk, not N·L.
//
// Work split: each thread owns one state n (or several when N > 64) of one channel and walks time sequentially,
// so all N states of a channel live in registers across the threads of one block and each (element, state) costs
// one exp. A block holds CPB channels of one batch row and walks time in tiles of TT steps: B_t/C_t for the tile are
// staged once in shared memory and shared by the block's channels; the next tile's inputs are loaded into
// registers while the current tile computes. Σ_n C·h is reduced through shared memory in a fixed order; there is
// one barrier pair per tile and none per state.
//
// Backward: per chunk (last first) the forward is recomputed from the saved chunk state, keeping the state at each
// tile start in shared memory; each tile is then recomputed once more (decays and states kept in registers) and
// walked backwards in time. Per-time dB/dC are summed over the block's channels on chip and stored once per block
// into a per-block partial buffer; dA, dD, dt_bias and constant dB/dC are summed per (batch, channel). Partials are
// finished by mg_sum_slices in a fixed order: no atomics, so the backward is bit-identical run to run.
#ifndef MAMBA_COMMON_CUH
#include "common.cuh"
#endif

#ifndef MAMBA_D_STATE
#define MAMBA_D_STATE 16
#endif
#ifndef MAMBA_D_INNER
#define MAMBA_D_INNER 1536
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
// Threads per block asked for, forward and backward; each block takes as many whole channels (min(N, 64) threads
// each) as fit, so any N from 1 to 256 works and the actual count is published in mamba_scan_config.
#ifndef MAMBA_SCAN_THREADS
#define MAMBA_SCAN_THREADS 128
#endif
#ifndef MAMBA_SCAN_BWD_THREADS
#define MAMBA_SCAN_BWD_THREADS 128
#endif
// 1: the forward sums Σ_n C·h with a reduce-scatter over warp shuffles (no shared buffer, one barrier per
// tile) where the channel's threads sit in one warp; 0: through shared memory.
#ifndef MAMBA_SCAN_SHUFFLE_REDUCE
#define MAMBA_SCAN_SHUFFLE_REDUCE 1
#endif
// Forward tiles per saved chunk state.
#ifndef MAMBA_SCAN_CHUNK_TILES
#define MAMBA_SCAN_CHUNK_TILES 8
#endif

namespace mg_scan {

__host__ __device__ constexpr int cmin(int a, int b) { return a < b ? a : b; }
__host__ __device__ constexpr int cmax(int a, int b) { return a > b ? a : b; }

constexpr int N = MAMBA_D_STATE;
constexpr int ED = MAMBA_D_INNER;
constexpr int TPC = N < 64 ? N : 64;                // threads per channel
constexpr int SPT = (N + TPC - 1) / TPC;            // states per thread
// Tile length: long enough to amortise the barriers, short enough that the staged next tile fits in registers.
#ifdef MAMBA_SCAN_TILE
constexpr int TT = MAMBA_SCAN_TILE;
#else
constexpr int TT = cmax(4, cmin(4 * TPC, cmin(16, 256 / N)) / 4 * 4);   // whole float4 groups
#endif
#ifdef MAMBA_SCAN_BWD_TILE
constexpr int TTB = MAMBA_SCAN_BWD_TILE;            // must divide CHUNK
#else
constexpr int TTB = cmax(4, TT / 8 * 4);            // backward tile: half a forward tile in whole float4 groups (divides CHUNK)
#endif
constexpr int CHUNK = TT * MAMBA_SCAN_CHUNK_TILES;  // steps per saved state
constexpr int ROW = TT + 4;                         // padded shared-memory row (conflict-free float4 reads)
constexpr int ROWB = TTB + 4;
[[maybe_unused]] constexpr int ROWD = TTB + 1;                      // odd row for the scalar dB/dC partials: no bank conflicts

constexpr int FWD_THREADS = cmax(1, MAMBA_SCAN_THREADS / TPC) * TPC;
constexpr bool SHUFFLE = MAMBA_SCAN_SHUFFLE_REDUCE && TPC <= 32 && 32 % TPC == 0 && TT % TPC == 0 &&
                         FWD_THREADS % 32 == 0;
constexpr int FWD_CPB = FWD_THREADS / TPC;
constexpr int FWD_BLOCKS_PER_BATCH = (ED + FWD_CPB - 1) / FWD_CPB;
constexpr int BWD_THREADS = cmax(1, MAMBA_SCAN_BWD_THREADS / TPC) * TPC;
constexpr int BWD_CPB = BWD_THREADS / TPC;
constexpr int BWD_BLOCKS_PER_BATCH = (ED + BWD_CPB - 1) / BWD_CPB;
constexpr int BWD_TILES_PER_CHUNK = CHUNK / TTB;

static_assert(FWD_THREADS % TPC == 0 && BWD_THREADS % TPC == 0, "blocks hold whole channels");
static_assert(TT % 4 == 0 && TTB % 4 == 0 && CHUNK % TTB == 0, "tiles are whole float4 groups");

#if MAMBA_SELECTIVE_B
typedef mg_in_t b_t;
#else
typedef float b_t;
#endif
#if MAMBA_SELECTIVE_C
typedef mg_in_t c_t;
#else
typedef float c_t;
#endif

// Forward shared memory (floats), two buffers of each so one barrier pair per tile suffices.
constexpr int F_CH = FWD_CPB * TT;                  // one per-channel array of one tile
constexpr int F_ST = N * ROW;                       // one per-state array (B or C) of one tile
constexpr int F_P = SHUFFLE ? 0 : FWD_THREADS * ROW;  // per-thread partial C·h
constexpr int F_OFF_DELTA = 0;
constexpr int F_OFF_DU = F_OFF_DELTA + 2 * F_CH;
constexpr int F_OFF_U = F_OFF_DU + 2 * F_CH;
constexpr int F_OFF_Z = F_OFF_U + 2 * F_CH;
constexpr int F_OFF_B = F_OFF_Z + (MAMBA_HAS_Z ? 2 * F_CH : 0);
constexpr int F_OFF_C = F_OFF_B + (MAMBA_SELECTIVE_B ? 2 * F_ST : 0);
constexpr int F_OFF_P = F_OFF_C + (MAMBA_SELECTIVE_C ? 2 * F_ST : 0);
constexpr int F_OFF_PARAM = F_OFF_P + 2 * F_P;    // dt_bias and D of the block's channels
constexpr int F_FLOATS = F_OFF_PARAM + 2 * FWD_CPB;

// Backward shared memory (floats).
constexpr int B_CH = BWD_CPB * TTB;
constexpr int B_ST = N * ROWB;
constexpr int B_PT = BWD_THREADS * ROWB;            // one per-thread array of one tile
constexpr int B_OFF_DELTA = 0;
constexpr int B_OFF_DU = B_OFF_DELTA + B_CH;
constexpr int B_OFF_U = B_OFF_DU + B_CH;
constexpr int B_OFF_V = B_OFF_U + B_CH;             // dt + bias (for the softplus gradient)
constexpr int B_OFF_Z = B_OFF_V + B_CH;
constexpr int B_OFF_DOUT = B_OFF_Z + B_CH;
constexpr int B_OFF_DY = B_OFF_DOUT + B_CH;
constexpr int B_OFF_B = B_OFF_DY + B_CH;
constexpr int B_OFF_C = B_OFF_B + (MAMBA_SELECTIVE_B ? B_ST : 0);
constexpr int B_OFF_P = B_OFF_C + (MAMBA_SELECTIVE_C ? B_ST : 0);   // C·h partials, later dB partials
constexpr int B_OFF_DC = B_OFF_P + SPT * B_PT;
constexpr int B_OFF_Q1 = B_OFF_DC + (MAMBA_SELECTIVE_C ? SPT * B_PT : 0);
constexpr int B_OFF_Q2 = B_OFF_Q1 + B_PT;
constexpr int B_OFF_HS = B_OFF_Q2 + B_PT;           // state at each tile start of the chunk
constexpr int B_OFF_RED = B_OFF_HS + BWD_TILES_PER_CHUNK * SPT * BWD_THREADS;
constexpr int B_OFF_PARAM = B_OFF_RED + 2 * BWD_THREADS;
constexpr int B_FLOATS = B_OFF_PARAM + 2 * BWD_CPB;

// Reduce-scatter over the TPC lanes of a channel: on entry each lane holds LEN partial sums (one per step), on
// exit lane j holds the channel's totals for steps j·LEN/TPC ... in pt[0 .. LEN/TPC). Fixed order, no barrier.
template <int O, int LEN>
__device__ __forceinline__ void reduce_scatter(float* pt, int j)
{
    if constexpr (O >= 1)
    {
        const bool upper = (j & O) != 0;
#pragma unroll
        for (int i = 0; i < LEN / 2; ++i)
        {
            const float send = upper ? pt[i] : pt[i + LEN / 2];
            const float keep = upper ? pt[i + LEN / 2] : pt[i];
            pt[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
        }
        reduce_scatter<O / 2, LEN / 2>(pt, j);
    }
}

} // namespace mg_scan

// Launch facts for the host: read with cuModuleGetGlobal. Grid = batch × blocks_per_batch blocks (1-D).
// [0] forward threads, [1] forward blocks per batch row, [2] forward dynamic shared bytes, [3] chunk length,
// [4] backward threads, [5] backward blocks per batch row, [6] backward dynamic shared bytes, [7] N.
extern "C" __constant__ int mamba_scan_config[8] = {
    mg_scan::FWD_THREADS, mg_scan::FWD_BLOCKS_PER_BATCH, mg_scan::F_FLOATS * 4, mg_scan::CHUNK,
    mg_scan::BWD_THREADS, mg_scan::BWD_BLOCKS_PER_BATCH, mg_scan::B_FLOATS * 4, mg_scan::N};

extern "C" __global__ void __launch_bounds__(mg_scan::FWD_THREADS)
mamba_scan_fwd(const mg_in_t* __restrict__ u, const mg_in_t* __restrict__ dt, const float* __restrict__ dt_bias,
               const float* __restrict__ A2, const mg_scan::b_t* __restrict__ Bm, const mg_scan::c_t* __restrict__ Cm,
               const float* __restrict__ Dv, const mg_in_t* __restrict__ z, mg_in_t* __restrict__ y,
               float* __restrict__ chunk_states, int L)
{
    using namespace mg_scan;
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    constexpr int CH_PER_THREAD = (F_CH + FWD_THREADS - 1) / FWD_THREADS;
    constexpr int ST_PER_THREAD = (N * TT + FWD_THREADS - 1) / FWD_THREADS;

    const int tid = threadIdx.x;
    const int b = blockIdx.x / FWD_BLOCKS_PER_BATCH;
    const int d0 = (blockIdx.x % FWD_BLOCKS_PER_BATCH) * FWD_CPB;
    const int c = tid / TPC, j = tid % TPC;
    const int d = d0 + c;
    const bool active = d < ED;
    const int rows = cmin(FWD_CPB, ED - d0);
    const long long chan_base = ((long long)b * ED + d0) * L;
    const long long state_base = (long long)b * N * L;
    const int tiles = (L + TT - 1) / TT;
    const int chunks = (L + CHUNK - 1) / CHUNK;

    float a2[SPT], h[SPT];
#if !MAMBA_SELECTIVE_B
    float bconst[SPT];
#endif
#if !MAMBA_SELECTIVE_C
    float cconst[SPT];
#endif
#pragma unroll
    for (int s = 0; s < SPT; ++s)
    {
        const int n = j + s * TPC;
        const bool ok = active && n < N;
        a2[s] = ok ? A2[d * N + n] : 0.f;
        h[s] = 0.f;
#if !MAMBA_SELECTIVE_B
        bconst[s] = ok ? Bm[d * N + n] : 0.f;
#endif
#if !MAMBA_SELECTIVE_C
        cconst[s] = ok ? Cm[d * N + n] : 0.f;
#endif
    }

    float* s_bias = smem + F_OFF_PARAM;
    float* s_D = s_bias + FWD_CPB;
    for (int r = tid; r < FWD_CPB; r += FWD_THREADS)
    {
        s_bias[r] = r < rows ? dt_bias[d0 + r] : 0.f;
        s_D[r] = r < rows ? Dv[d0 + r] : 0.f;
    }
    __syncthreads();

    // Next tile's inputs, held in registers while the current tile computes.
    float r_u[CH_PER_THREAD];
    [[maybe_unused]] float r_dt[CH_PER_THREAD], r_z[CH_PER_THREAD], r_b[ST_PER_THREAD], r_c[ST_PER_THREAD];
    auto load_tile = [&](int t0) {
#pragma unroll
        for (int i = 0; i < CH_PER_THREAD; ++i)
        {
            const int e = tid + i * FWD_THREADS, row = e / TT, t = e % TT;
            const bool ok = e < F_CH && row < rows && t0 + t < L;
            const long long at = chan_base + (long long)row * L + t0 + t;
            r_u[i] = ok ? mg_load(u + at) : 0.f;
#if MAMBA_SELECTIVE_DELTA
            r_dt[i] = ok ? mg_load(dt + at) : 0.f;
#endif
#if MAMBA_HAS_Z
            r_z[i] = ok ? mg_load(z + at) : 0.f;
#endif
        }
#pragma unroll
        for (int i = 0; i < ST_PER_THREAD; ++i)
        {
            const int e = tid + i * FWD_THREADS, n = e / TT, t = e % TT;
            [[maybe_unused]] const bool ok = e < N * TT && t0 + t < L;
            [[maybe_unused]] const long long at = state_base + (long long)n * L + t0 + t;
#if MAMBA_SELECTIVE_B
            r_b[i] = ok ? mg_load(Bm + at) : 0.f;
#endif
#if MAMBA_SELECTIVE_C
            r_c[i] = ok ? mg_load(Cm + at) : 0.f;
#endif
        }
    };

    load_tile(0);
    for (int k = 0; k < tiles; ++k)
    {
        const int buf = k & 1, t0 = k * TT;
        float* s_delta = smem + F_OFF_DELTA + buf * F_CH;
        float* s_du = smem + F_OFF_DU + buf * F_CH;
        float* s_u = smem + F_OFF_U + buf * F_CH;
        [[maybe_unused]] float* s_z = smem + F_OFF_Z + buf * F_CH;
        [[maybe_unused]] float* s_b = smem + F_OFF_B + buf * F_ST;
        [[maybe_unused]] float* s_c = smem + F_OFF_C + buf * F_ST;
        float* s_p = smem + F_OFF_P + buf * F_P;

#pragma unroll
        for (int i = 0; i < CH_PER_THREAD; ++i)
        {
            const int e = tid + i * FWD_THREADS, row = e / TT, t = e % TT;
            if (e < F_CH)
            {
                const bool ok = row < rows && t0 + t < L;
                const float bias = s_bias[row];
#if MAMBA_SELECTIVE_DELTA
                const float delta = ok ? mg_softplus(r_dt[i] + bias) : 0.f;
#else
                const float delta = ok ? mg_softplus(bias) : 0.f;
#endif
                s_delta[e] = delta;
                s_du[e] = delta * r_u[i];
                s_u[e] = r_u[i];
#if MAMBA_HAS_Z
                s_z[e] = r_z[i];
#endif
            }
        }
#pragma unroll
        for (int i = 0; i < ST_PER_THREAD; ++i)
        {
            const int e = tid + i * FWD_THREADS, n = e / TT, t = e % TT;
            if (e < N * TT)
            {
#if MAMBA_SELECTIVE_B
                s_b[n * ROW + t] = r_b[i];
#endif
#if MAMBA_SELECTIVE_C
                s_c[n * ROW + t] = r_c[i];
#endif
            }
        }
        if (k + 1 < tiles) load_tile(t0 + TT);
        __syncthreads();

        // The recurrence: SPT states of channel c, TT steps, one exp each.
        float pt[TT];
#pragma unroll
        for (int t4 = 0; t4 < TT; t4 += 4)
        {
            const float4 dl = *reinterpret_cast<const float4*>(s_delta + c * TT + t4);
            const float4 du = *reinterpret_cast<const float4*>(s_du + c * TT + t4);
            float p0 = 0.f, p1 = 0.f, p2 = 0.f, p3 = 0.f;
#pragma unroll
            for (int s = 0; s < SPT; ++s)
            {
                const int n = j + s * TPC;
                if (SPT > 1 && n >= N) continue;
#if MAMBA_SELECTIVE_B
                const float4 bv = *reinterpret_cast<const float4*>(s_b + n * ROW + t4);
#else
                const float4 bv = make_float4(bconst[s], bconst[s], bconst[s], bconst[s]);
#endif
#if MAMBA_SELECTIVE_C
                const float4 cv = *reinterpret_cast<const float4*>(s_c + n * ROW + t4);
#else
                const float4 cv = make_float4(cconst[s], cconst[s], cconst[s], cconst[s]);
#endif
                float hs = h[s];
                hs = fmaf(mg_exp2(a2[s] * dl.x), hs, du.x * bv.x); p0 = fmaf(cv.x, hs, p0);
                hs = fmaf(mg_exp2(a2[s] * dl.y), hs, du.y * bv.y); p1 = fmaf(cv.y, hs, p1);
                hs = fmaf(mg_exp2(a2[s] * dl.z), hs, du.z * bv.z); p2 = fmaf(cv.z, hs, p2);
                hs = fmaf(mg_exp2(a2[s] * dl.w), hs, du.w * bv.w); p3 = fmaf(cv.w, hs, p3);
                h[s] = hs;
            }
            if constexpr (SHUFFLE)
            {
                pt[t4] = p0; pt[t4 + 1] = p1; pt[t4 + 2] = p2; pt[t4 + 3] = p3;
            }
            else
                *reinterpret_cast<float4*>(s_p + tid * ROW + t4) = make_float4(p0, p1, p2, p3);
        }

        if ((k + 1) % MAMBA_SCAN_CHUNK_TILES == 0 || k + 1 == tiles)
        {
            const int chunk = k / MAMBA_SCAN_CHUNK_TILES;
#pragma unroll
            for (int s = 0; s < SPT; ++s)
            {
                const int n = j + s * TPC;
                if (active && n < N) chunk_states[(((long long)b * ED + d) * chunks + chunk) * N + n] = h[s];
            }
        }
        if constexpr (SHUFFLE)
        {
            constexpr int R = TT / TPC;
            reduce_scatter<TPC / 2, TT>(pt, j);
#pragma unroll
            for (int i = 0; i < R; ++i)
            {
                const int t = j * R + i;
                if (!active || t0 + t >= L) break;
                float v = fmaf(s_D[c], s_u[c * TT + t], pt[i]);
#if MAMBA_HAS_Z
                v *= mg_silu(s_z[c * TT + t]);
#endif
                mg_store(y + chan_base + (long long)c * L + t0 + t, v);
            }
            continue;
        }
        __syncthreads();

        // y = Σ_n C·h + D·u, gated; four consecutive steps per thread, states summed in index order.
        for (int e = tid; e < FWD_CPB * (TT / 4); e += FWD_THREADS)
        {
            const int row = e / (TT / 4), t4 = (e % (TT / 4)) * 4;
            if (row >= rows) continue;
            float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
            for (int jj = 0; jj < TPC; ++jj)
            {
                const float4 p = *reinterpret_cast<const float4*>(s_p + (row * TPC + jj) * ROW + t4);
                acc.x += p.x; acc.y += p.y; acc.z += p.z; acc.w += p.w;
            }
            const float dd = s_D[row];
            float out[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
            for (int q = 0; q < 4; ++q)
            {
                const int t = t4 + q;
                if (t0 + t >= L) break;
                float v = fmaf(dd, s_u[row * TT + t], out[q]);
#if MAMBA_HAS_Z
                v *= mg_silu(s_z[row * TT + t]);
#endif
                mg_store(y + chan_base + (long long)row * L + t0 + t, v);
            }
        }
    }
}

// Backward. Outputs: du, ddt (gradient of dt before the softplus; selective Δ only), dz (with z), and fp32
// partials finished by mg_sum_slices:
//   part_dB / part_dC: variable → (BWD_BLOCKS_PER_BATCH, batch, N, L), summed over slice 0; constant → (batch, ED, N)
//   part_dA (batch, ED, N), part_dD (batch, ED), part_dbias (batch, ED): summed over batch.
extern "C" __global__ void __launch_bounds__(mg_scan::BWD_THREADS)
mamba_scan_bwd(const mg_in_t* __restrict__ u, const mg_in_t* __restrict__ dt, const float* __restrict__ dt_bias,
               const float* __restrict__ A2, const mg_scan::b_t* __restrict__ Bm, const mg_scan::c_t* __restrict__ Cm,
               const float* __restrict__ Dv, const mg_in_t* __restrict__ z, const mg_in_t* __restrict__ dout,
               const float* __restrict__ chunk_states, mg_in_t* __restrict__ du_out, mg_in_t* __restrict__ ddt_out,
               mg_in_t* __restrict__ dz_out, float* __restrict__ part_dA, float* __restrict__ part_dB,
               float* __restrict__ part_dC, float* __restrict__ part_dD, float* __restrict__ part_dbias, int batch, int L)
{
    using namespace mg_scan;
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    constexpr int Q4 = TTB / 4;                         // float4 groups per tile row
    constexpr int OUT_PER_THREAD = (BWD_CPB * Q4 + BWD_THREADS - 1) / BWD_THREADS;

    const int tid = threadIdx.x;
    const int b = blockIdx.x / BWD_BLOCKS_PER_BATCH;
    const int cb = blockIdx.x % BWD_BLOCKS_PER_BATCH;
    const int d0 = cb * BWD_CPB;
    const int c = tid / TPC, j = tid % TPC;
    const int d = d0 + c;
    const bool active = d < ED;
    const int rows = cmin(BWD_CPB, ED - d0);
    const long long chan_base = ((long long)b * ED + d0) * L;
    const long long state_base = (long long)b * N * L;
    const int chunks = (L + CHUNK - 1) / CHUNK;

    float* s_delta = smem + B_OFF_DELTA;
    float* s_du = smem + B_OFF_DU;
    float* s_u = smem + B_OFF_U;
    float* s_v = smem + B_OFF_V;
    [[maybe_unused]] float* s_z = smem + B_OFF_Z;
    float* s_dout = smem + B_OFF_DOUT;
    float* s_dy = smem + B_OFF_DY;
    [[maybe_unused]] float* s_b = smem + B_OFF_B;
    [[maybe_unused]] float* s_c = smem + B_OFF_C;
    float* s_p = smem + B_OFF_P;
    [[maybe_unused]] float* s_dc = smem + B_OFF_DC;
    float* s_q1 = smem + B_OFF_Q1;
    float* s_q2 = smem + B_OFF_Q2;
    float* s_hs = smem + B_OFF_HS;
    float* s_red = smem + B_OFF_RED;
    float* s_bias = smem + B_OFF_PARAM;
    float* s_D = s_bias + BWD_CPB;
    for (int r = tid; r < BWD_CPB; r += BWD_THREADS)
    {
        s_bias[r] = r < rows ? dt_bias[d0 + r] : 0.f;
        s_D[r] = r < rows ? Dv[d0 + r] : 0.f;
    }
    __syncthreads();

    float a2[SPT], anat[SPT], acc_dA[SPT];
#if !MAMBA_SELECTIVE_B
    float bconst[SPT], acc_dB[SPT];
#endif
#if !MAMBA_SELECTIVE_C
    float cconst[SPT], acc_dC[SPT];
#endif
#pragma unroll
    for (int s = 0; s < SPT; ++s)
    {
        const int n = j + s * TPC;
        const bool ok = active && n < N;
        a2[s] = ok ? A2[d * N + n] : 0.f;
        anat[s] = a2[s] * MG_LN2;
        acc_dA[s] = 0.f;
#if !MAMBA_SELECTIVE_B
        bconst[s] = ok ? Bm[d * N + n] : 0.f;
        acc_dB[s] = 0.f;
#endif
#if !MAMBA_SELECTIVE_C
        cconst[s] = ok ? Cm[d * N + n] : 0.f;
        acc_dC[s] = 0.f;
#endif
    }
    float acc_dD[OUT_PER_THREAD], acc_dbias[OUT_PER_THREAD];
#pragma unroll
    for (int i = 0; i < OUT_PER_THREAD; ++i) acc_dD[i] = acc_dbias[i] = 0.f;

    // Stages one tile into shared memory; `full` adds what only the backward walk needs.
    auto stage = [&](int t0, bool full) {
        for (int e = tid; e < B_CH; e += BWD_THREADS)
        {
            const int row = e / TTB, t = e % TTB;
            const bool ok = row < rows && t0 + t < L;
            const long long at = chan_base + (long long)row * L + t0 + t;
            const float bias = s_bias[row];
#if MAMBA_SELECTIVE_DELTA
            const float v = ok ? mg_load(dt + at) + bias : 0.f;
#else
            const float v = bias;
#endif
            const float delta = ok ? mg_softplus(v) : 0.f;
            const float uu = ok ? mg_load(u + at) : 0.f;
            s_delta[e] = delta;
            s_du[e] = delta * uu;
            if (full)
            {
                s_u[e] = uu;
                s_v[e] = v;
#if MAMBA_HAS_Z
                s_z[e] = ok ? mg_load(z + at) : 0.f;
#endif
                s_dout[e] = ok ? mg_load(dout + at) : 0.f;
            }
        }
        for (int e = tid; e < N * TTB; e += BWD_THREADS)
        {
            const int n = e / TTB, t = e % TTB;
            [[maybe_unused]] const bool ok = t0 + t < L;
            [[maybe_unused]] const long long at = state_base + (long long)n * L + t0 + t;
#if MAMBA_SELECTIVE_B
            s_b[n * ROWB + t] = ok ? mg_load(Bm + at) : 0.f;
#endif
#if MAMBA_SELECTIVE_C
            if (full) s_c[n * ROWB + t] = ok ? mg_load(Cm + at) : 0.f;
#endif
        }
    };

    float carry[SPT];   // a_{t+1}·g_{t+1}: the reverse state flowing into step t
#pragma unroll
    for (int s = 0; s < SPT; ++s) carry[s] = 0.f;

    for (int kc = chunks - 1; kc >= 0; --kc)
    {
        const int ts = kc * CHUNK;
        const int tiles = (cmin(ts + CHUNK, L) - ts + TTB - 1) / TTB;

        // Pass 1: forward over the chunk from its saved start state, remembering each tile's start state.
        float h[SPT];
#pragma unroll
        for (int s = 0; s < SPT; ++s)
        {
            const int n = j + s * TPC;
            h[s] = (kc > 0 && active && n < N) ? chunk_states[(((long long)b * ED + d) * chunks + kc - 1) * N + n] : 0.f;
        }
        for (int q = 0; q < tiles; ++q)
        {
#pragma unroll
            for (int s = 0; s < SPT; ++s) s_hs[(q * SPT + s) * BWD_THREADS + tid] = h[s];
            stage(ts + q * TTB, false);
            __syncthreads();
#pragma unroll
            for (int t4 = 0; t4 < TTB; t4 += 4)
            {
                const float4 dl = *reinterpret_cast<const float4*>(s_delta + c * TTB + t4);
                const float4 du = *reinterpret_cast<const float4*>(s_du + c * TTB + t4);
#pragma unroll
                for (int s = 0; s < SPT; ++s)
                {
                    const int n = j + s * TPC;
                    if (SPT > 1 && n >= N) continue;
#if MAMBA_SELECTIVE_B
                    const float4 bv = *reinterpret_cast<const float4*>(s_b + n * ROWB + t4);
#else
                    const float4 bv = make_float4(bconst[s], bconst[s], bconst[s], bconst[s]);
#endif
                    float hs = h[s];
                    hs = fmaf(mg_exp2(a2[s] * dl.x), hs, du.x * bv.x);
                    hs = fmaf(mg_exp2(a2[s] * dl.y), hs, du.y * bv.y);
                    hs = fmaf(mg_exp2(a2[s] * dl.z), hs, du.z * bv.z);
                    hs = fmaf(mg_exp2(a2[s] * dl.w), hs, du.w * bv.w);
                    h[s] = hs;
                }
            }
            __syncthreads();
        }

        // Pass 2: tiles last to first.
        for (int q = tiles - 1; q >= 0; --q)
        {
            const int t0 = ts + q * TTB;
            stage(t0, true);
            float hprev0[SPT];
#pragma unroll
            for (int s = 0; s < SPT; ++s) hprev0[s] = s_hs[(q * SPT + s) * BWD_THREADS + tid];
            __syncthreads();

            // Recompute the tile's decays and states, and C·h partials for y.
            float ak[TTB][SPT], hk[TTB][SPT], bk[TTB][SPT], ck[TTB][SPT];   // kept for the backward walk
#pragma unroll
            for (int t4 = 0; t4 < TTB; t4 += 4)
            {
                const float4 dl = *reinterpret_cast<const float4*>(s_delta + c * TTB + t4);
                const float4 du = *reinterpret_cast<const float4*>(s_du + c * TTB + t4);
                const float dls[4] = {dl.x, dl.y, dl.z, dl.w}, dus[4] = {du.x, du.y, du.z, du.w};
                float p[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
                for (int s = 0; s < SPT; ++s)
                {
                    const int n = j + s * TPC;
                    if (SPT > 1 && n >= N) { for (int qq = 0; qq < 4; ++qq) { ak[t4 + qq][s] = 1.f; hk[t4 + qq][s] = bk[t4 + qq][s] = ck[t4 + qq][s] = 0.f; } continue; }
#if MAMBA_SELECTIVE_B
                    const float4 bv = *reinterpret_cast<const float4*>(s_b + n * ROWB + t4);
#else
                    const float4 bv = make_float4(bconst[s], bconst[s], bconst[s], bconst[s]);
#endif
#if MAMBA_SELECTIVE_C
                    const float4 cv = *reinterpret_cast<const float4*>(s_c + n * ROWB + t4);
#else
                    const float4 cv = make_float4(cconst[s], cconst[s], cconst[s], cconst[s]);
#endif
                    const float bs[4] = {bv.x, bv.y, bv.z, bv.w}, cs[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
                    for (int qq = 0; qq < 4; ++qq)
                    {
                        const float hp = (t4 + qq == 0) ? hprev0[s] : hk[t4 + qq - 1][s];
                        const float a = mg_exp2(a2[s] * dls[qq]);
                        ak[t4 + qq][s] = a;
                        bk[t4 + qq][s] = bs[qq];
                        ck[t4 + qq][s] = cs[qq];
                        hk[t4 + qq][s] = fmaf(a, hp, dus[qq] * bs[qq]);
                        p[qq] = fmaf(cs[qq], hk[t4 + qq][s], p[qq]);
                    }
                }
                *reinterpret_cast<float4*>(s_p + tid * ROWB + t4) = make_float4(p[0], p[1], p[2], p[3]);
            }
            __syncthreads();

            // y before the gate → dz, dy; dD accumulates dy·u.
#pragma unroll
            for (int i = 0; i < OUT_PER_THREAD; ++i)
            {
                const int e = tid + i * BWD_THREADS;
                if (e >= BWD_CPB * Q4) break;
                const int row = e / Q4, t4 = (e % Q4) * 4;
                if (row >= rows) continue;
                float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 8
                for (int jj = 0; jj < TPC; ++jj)
                {
                    const float4 p = *reinterpret_cast<const float4*>(s_p + (row * TPC + jj) * ROWB + t4);
                    acc.x += p.x; acc.y += p.y; acc.z += p.z; acc.w += p.w;
                }
                const float dd = s_D[row];
                const float ys[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
                for (int qq = 0; qq < 4; ++qq)
                {
                    const int t = t4 + qq, at = row * TTB + t;
                    const float uu = s_u[at];
                    const float ypre = fmaf(dd, uu, ys[qq]);
                    const float g_out = s_dout[at];
#if MAMBA_HAS_Z
                    const float zz = s_z[at];
                    const float dy = g_out * mg_silu(zz);
                    if (t0 + t < L) mg_store(dz_out + chan_base + (long long)row * L + t0 + t, g_out * ypre * mg_silu_grad(zz));
#else
                    const float dy = g_out;
#endif
                    s_dy[at] = dy;
                    acc_dD[i] = fmaf(dy, uu, acc_dD[i]);
                }
            }
            __syncthreads();

            // Walk the tile backwards in time.
            float q1[TTB], q2[TTB];
#pragma unroll
            for (int t = TTB - 1; t >= 0; --t)
            {
                const int at = c * TTB + t;
                const float dyt = s_dy[at], dlt = s_delta[at], dut = s_du[at], ut = s_u[at];
                q1[t] = 0.f; q2[t] = 0.f;
#pragma unroll
                for (int s = 0; s < SPT; ++s)
                {
                    const int n = j + s * TPC;
                    if (SPT > 1 && n >= N) continue;
                    const float bt = bk[t][s], ct = ck[t][s];
                    const float g = fmaf(ct, dyt, carry[s]);
                    const float hp = t == 0 ? hprev0[s] : hk[t - 1][s];
                    const float gah = g * ak[t][s] * hp;
                    q1[t] = fmaf(g, bt, q1[t]);
                    q2[t] = fmaf(anat[s], gah, fmaf(g * bt, ut, q2[t]));
                    acc_dA[s] = fmaf(gah, dlt, acc_dA[s]);
#if MAMBA_SELECTIVE_B
                    s_p[(s * BWD_THREADS + tid) * ROWD + t] = g * dut;
#else
                    acc_dB[s] = fmaf(g, dut, acc_dB[s]);
#endif
#if MAMBA_SELECTIVE_C
                    s_dc[(s * BWD_THREADS + tid) * ROWD + t] = dyt * hk[t][s];
#else
                    acc_dC[s] = fmaf(dyt, hk[t][s], acc_dC[s]);
#endif
                    carry[s] = ak[t][s] * g;
                }
            }
#pragma unroll
            for (int t4 = 0; t4 < TTB; t4 += 4)
            {
                *reinterpret_cast<float4*>(s_q1 + tid * ROWB + t4) = make_float4(q1[t4], q1[t4 + 1], q1[t4 + 2], q1[t4 + 3]);
                *reinterpret_cast<float4*>(s_q2 + tid * ROWB + t4) = make_float4(q2[t4], q2[t4 + 1], q2[t4 + 2], q2[t4 + 3]);
            }
            __syncthreads();

            // Per (channel, time): du and dΔ summed over states in index order.
#pragma unroll
            for (int i = 0; i < OUT_PER_THREAD; ++i)
            {
                const int e = tid + i * BWD_THREADS;
                if (e >= BWD_CPB * Q4) break;
                const int row = e / Q4, t4 = (e % Q4) * 4;
                if (row >= rows) continue;
                float4 s1 = make_float4(0.f, 0.f, 0.f, 0.f), s2 = s1;
#pragma unroll 8
                for (int jj = 0; jj < TPC; ++jj)
                {
                    const float4 a = *reinterpret_cast<const float4*>(s_q1 + (row * TPC + jj) * ROWB + t4);
                    const float4 bq = *reinterpret_cast<const float4*>(s_q2 + (row * TPC + jj) * ROWB + t4);
                    s1.x += a.x; s1.y += a.y; s1.z += a.z; s1.w += a.w;
                    s2.x += bq.x; s2.y += bq.y; s2.z += bq.z; s2.w += bq.w;
                }
                const float dd = s_D[row];
                const float sum1[4] = {s1.x, s1.y, s1.z, s1.w}, sum2[4] = {s2.x, s2.y, s2.z, s2.w};
#pragma unroll
                for (int qq = 0; qq < 4; ++qq)
                {
                    const int t = t4 + qq, at = row * TTB + t;
                    if (t0 + t >= L) break;
                    const long long g_at = chan_base + (long long)row * L + t0 + t;
                    mg_store(du_out + g_at, fmaf(s_dy[at], dd, s_delta[at] * sum1[qq]));
                    const float ddelta_in = sum2[qq] * mg_softplus_grad(s_v[at]);
#if MAMBA_SELECTIVE_DELTA
                    mg_store(ddt_out + g_at, ddelta_in);
#endif
                    acc_dbias[i] += ddelta_in;
                }
            }
#if MAMBA_SELECTIVE_B || MAMBA_SELECTIVE_C
            // Per (state, time): dB, dC summed over the block's channels in index order, one store per block.
            for (int e = tid; e < N * TTB; e += BWD_THREADS)
            {
                const int n = e / TTB, t = e % TTB;
                const int jn = n % TPC, sn = n / TPC;
                [[maybe_unused]] float sb = 0.f, sc = 0.f;
                for (int cc = 0; cc < rows; ++cc)
                {
                    const int r = (sn * BWD_THREADS + cc * TPC + jn) * ROWD + t;
#if MAMBA_SELECTIVE_B
                    sb += s_p[r];
#endif
#if MAMBA_SELECTIVE_C
                    sc += s_dc[r];
#endif
                }
                if (t0 + t >= L) continue;
                const long long at = (((long long)cb * batch + b) * N + n) * L + t0 + t;
#if MAMBA_SELECTIVE_B
                part_dB[at] = sb;
#endif
#if MAMBA_SELECTIVE_C
                part_dC[at] = sc;
#endif
            }
#endif
            __syncthreads();
        }
    }

    // Per-(batch, channel) sums.
#pragma unroll
    for (int s = 0; s < SPT; ++s)
    {
        const int n = j + s * TPC;
        if (!active || n >= N) continue;
        const long long at = ((long long)b * ED + d) * N + n;
        part_dA[at] = acc_dA[s];
#if !MAMBA_SELECTIVE_B
        part_dB[at] = acc_dB[s];
#endif
#if !MAMBA_SELECTIVE_C
        part_dC[at] = acc_dC[s];
#endif
    }
    // dD and dt_bias: each thread holds partials of fixed (channel, slot) pairs; sum the slots of a channel in order.
    for (int r = 0; r < 2; ++r)
    {
#pragma unroll
        for (int i = 0; i < OUT_PER_THREAD; ++i)
        {
            const int e = tid + i * BWD_THREADS;
            if (e < BWD_CPB * Q4) s_red[e] = r == 0 ? acc_dD[i] : acc_dbias[i];
        }
        __syncthreads();
        if (tid < rows)
        {
            float total = 0.f;
            for (int sl = 0; sl < Q4; ++sl) total += s_red[tid * Q4 + sl];
            (r == 0 ? part_dD : part_dbias)[(long long)b * ED + d0 + tid] = total;
        }
        __syncthreads();
    }
}
