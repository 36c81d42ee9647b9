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
// Work split: each thread owns one state n (or several: MAMBA_SCAN_FWD_STATES, and always when N > 64) of one
// channel and walks time sequentially, so all N states of a channel live in registers across the threads of one
// block and each (element, state) costs one exp. A block holds CPB channels of one batch row and walks time in tiles
// of TT steps: B_t/C_t for the tile are staged once in shared memory and shared by the block's channels; the next
// tile's inputs are loaded into registers while the current tile computes. Σ_n C·h is a reduce-scatter over warp
// shuffles in a fixed order (through shared memory where a channel's threads span warps); one barrier per tile.
// Two such splits are compiled, narrow (few states per thread: many threads for few rows) and wide (more states per
// thread: fewer instructions per state), and the host picks one by batch·ED. Where batch × blocks cannot fill the
// device, the host also splits L into segments of whole chunks (gridDim.y): pass 1 runs each segment but the last
// from a zero state and keeps its end state and decay product exp2(A2·ΣΔ); a combine walks the segment ends in order
// (h ← P·h + h_end); pass 2 runs every segment from its true start state. Deterministic: fixed order, one writer
// per output.
//
// Backward: a channel's states sit in one warp (SPTB per thread), and per chunk, last first, the chunk's inputs are
// staged in shared memory once (a tile at a time, during the pass 2 of the chunk after it); pass 1 reruns the
// forward from the saved chunk state and keeps each tile's start state; pass 2 takes the tiles last to first,
// recomputes a tile's decays and states in registers and walks it backwards. Sums over states (for y, du, dΔ) are
// shuffle butterflies; per-time dB/dC are summed over a warp's channels by butterflies, over the block's warps in
// shared memory, and stored once per block into a per-block partial buffer; dA, dD, dt_bias and constant dB/dC are
// summed per (batch, channel). Partials are finished by mg_sum_slices in a fixed order: no atomics, so the backward
// is bit-identical run to run.
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
// Threads per block asked for, forward and backward; each block takes as many whole channels as fit, so any N from
// 1 to 256 works and the actual count is published in mamba_scan_config. The backward's default is 256 where a
// channel takes 16 or 32 threads (fewer, larger partial-sum slices; measured faster at N = 16) and 128 otherwise
// (with fewer threads per channel, 256 would stage more channels than shared memory holds).
#ifndef MAMBA_SCAN_THREADS
#define MAMBA_SCAN_THREADS 128
#endif
#ifndef MAMBA_SCAN_BWD_THREADS
#define MAMBA_SCAN_BWD_THREADS (MAMBA_D_STATE >= 16 && MAMBA_D_STATE <= 32 ? 256 : 128)
#endif
// States each thread carries where N is small enough for one per thread (forward N < 64, backward N <= 32): more
// states per thread means fewer shuffles per state in the sums over states but fewer threads. Defaults from the
// H200 measurements in docs/gpu-kernels.md: the backward takes 2 for 8 <= N <= 32; the narrow forward 4 at N = 32 only
// (at N = 16 it is faster at batch·ED = 12288 but far slower at batch 1, where a quarter of the threads cannot fill
// the chip; at N = 8 it is slower).
#ifndef MAMBA_SCAN_FWD_STATES
#define MAMBA_SCAN_FWD_STATES (MAMBA_D_STATE == 32 ? 4 : 1)
#endif
// The forward is compiled twice, narrow (MAMBA_SCAN_FWD_STATES per thread) and wide (these per thread); the host
// runs the wide one from MAMBA_SCAN_FWD_WIDE_MIN_ROWS rows (batch·ED) up. Measured on the H200 (docs/gpu-kernels.md):
// at N = 64 wide is 2.8-3.2x faster at 8x1536x2048; at N = 16 wide is faster in fp32 from 8x1536 rows (0.285 against
// 0.366 ms) but slower at 4x1536 and in bf16 at every measured shape (137 registers: 3 blocks per SM).
#ifndef MAMBA_SCAN_FWD_WIDE_STATES
#define MAMBA_SCAN_FWD_WIDE_STATES (MAMBA_D_STATE == 16 || MAMBA_D_STATE == 64 ? 4 : MAMBA_SCAN_FWD_STATES)
#endif
#ifndef MAMBA_SCAN_FWD_WIDE_MIN_ROWS
#define MAMBA_SCAN_FWD_WIDE_MIN_ROWS \
    (MAMBA_D_STATE == 64 ? 0 : MAMBA_D_STATE == 16 && !MAMBA_INPUT_BF16 ? 12288 : 0x7fffffff)
#endif
// Splitting L across blocks (the host's plan): when batch × blocks per row is below MAMBA_SCAN_FWD_SPLIT_BELOW blocks
// per SM, the forward runs as enough segments for MAMBA_SCAN_FWD_SPLIT_TARGET blocks per SM, each at least
// MAMBA_SCAN_FWD_MIN_SEGMENT steps long (pass 1: each segment's end state from zero and its decay product; a combine
// in order; pass 2: the segments from their true start states). Pass 1 costs about 0.6 of a forward, so splitting
// pays only well below a full wave: measured at 1x1536 rows (192 blocks) 1.4x faster at L 2048 and 2x at L 65536,
// at 2x1536 about even, at 1x5120 (640 blocks) slower.
#ifndef MAMBA_SCAN_FWD_SPLIT_BELOW
#define MAMBA_SCAN_FWD_SPLIT_BELOW 2
#endif
#ifndef MAMBA_SCAN_FWD_SPLIT_TARGET
#define MAMBA_SCAN_FWD_SPLIT_TARGET 16
#endif
#ifndef MAMBA_SCAN_FWD_MIN_SEGMENT
#define MAMBA_SCAN_FWD_MIN_SEGMENT 256
#endif
#ifndef MAMBA_SCAN_BWD_STATES
#define MAMBA_SCAN_BWD_STATES (MAMBA_D_STATE >= 8 && MAMBA_D_STATE <= 32 ? 2 : 1)
#endif
// 1: the forward sums Σ_n C·h with a reduce-scatter over warp shuffles (no shared buffer, one barrier per
// tile) where the channel's threads sit in one warp; 0: through shared memory.
#ifndef MAMBA_SCAN_SHUFFLE_REDUCE
#define MAMBA_SCAN_SHUFFLE_REDUCE 1
#endif
// Forward tiles per saved chunk state. The backward stages a whole chunk in shared memory, so a shorter chunk for
// 8 <= N <= 32 leaves room for its 256-thread blocks (measured faster there); elsewhere 8 tiles.
#ifndef MAMBA_SCAN_CHUNK_TILES
#define MAMBA_SCAN_CHUNK_TILES (MAMBA_D_STATE >= 8 && MAMBA_D_STATE <= 32 ? 4 : 8)
#endif

namespace mg_scan {

__host__ __device__ constexpr int cmin(int a, int b) { return a < b ? a : b; }
__host__ __device__ constexpr int cmax(int a, int b) { return a > b ? a : b; }

constexpr int N = MAMBA_D_STATE;
constexpr int ED = MAMBA_D_INNER;
// Forward work split for STATES states per thread. Two are compiled into every module, the narrow one
// (MAMBA_SCAN_FWD_STATES: many threads, for few rows) and the wide one (MAMBA_SCAN_FWD_WIDE_STATES: fewer instructions
// per state, for many rows); the host picks by batch·ED (mamba_scan_fwd_plan).
template <int STATES>
struct FwdSplit
{
    static constexpr int TPC = cmax(1, (N < 64 ? N : 64) / STATES);   // threads per channel
    static constexpr int SPT = (N + TPC - 1) / TPC;                   // states per thread
    // Tile length: long enough to amortise the barriers, short enough that the staged next tile fits in registers.
#ifdef MAMBA_SCAN_TILE
    static constexpr int TT = MAMBA_SCAN_TILE;
#else
    static constexpr int TT = cmax(4, cmin(4 * TPC, cmin(16, 256 / N)) / 4 * 4);   // whole float4 groups
#endif
    static constexpr int ROW = TT + 4;              // padded shared-memory row (conflict-free float4 reads)
    static constexpr int THREADS = cmax(1, MAMBA_SCAN_THREADS / TPC) * TPC;
    static constexpr bool SHUFFLE = MAMBA_SCAN_SHUFFLE_REDUCE && TPC <= 32 && 32 % TPC == 0 && TT % TPC == 0 &&
                                    THREADS % 32 == 0;
    static constexpr int CPB = THREADS / TPC;
    static constexpr int BLOCKS_PER_BATCH = (ED + CPB - 1) / CPB;
    static_assert(THREADS % TPC == 0, "blocks hold whole channels");
    static_assert(TT % 4 == 0, "tiles are whole float4 groups");

    // Shared memory (floats), two buffers of each so one barrier per tile suffices.
    static constexpr int S_CH = CPB * TT;           // one per-channel array of one tile
    static constexpr int S_ST = N * ROW;            // one per-state array (B or C) of one tile
    static constexpr int S_P = SHUFFLE ? 0 : THREADS * ROW;   // per-thread partial C·h
    static constexpr int OFF_DELTA = 0;
    static constexpr int OFF_DU = OFF_DELTA + 2 * S_CH;
    static constexpr int OFF_U = OFF_DU + 2 * S_CH;
    static constexpr int OFF_Z = OFF_U + 2 * S_CH;
    static constexpr int OFF_B = OFF_Z + (MAMBA_HAS_Z ? 2 * S_CH : 0);
    static constexpr int OFF_C = OFF_B + (MAMBA_SELECTIVE_B ? 2 * S_ST : 0);
    static constexpr int OFF_P = OFF_C + (MAMBA_SELECTIVE_C ? 2 * S_ST : 0);
    static constexpr int OFF_PARAM = OFF_P + 2 * S_P;   // dt_bias and D of the block's channels
    static constexpr int FLOATS = OFF_PARAM + 2 * CPB;
};
using FwdNarrow = FwdSplit<MAMBA_SCAN_FWD_STATES>;
using FwdWide = FwdSplit<MAMBA_SCAN_FWD_WIDE_STATES>;
constexpr int CHUNK = FwdNarrow::TT * MAMBA_SCAN_CHUNK_TILES;   // steps per saved state
constexpr int FWD_THREADS = FwdNarrow::THREADS;
constexpr int FWD_BLOCKS_PER_BATCH = FwdNarrow::BLOCKS_PER_BATCH;
constexpr int F_FLOATS = FwdNarrow::FLOATS;
static_assert(CHUNK % FwdWide::TT == 0, "the wide forward's tiles divide the chunk");
constexpr int COMBINE_THREADS = 256;                 // threads per block of mamba_scan_fwd_combine

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

// Backward work split: as in the forward, but a channel's states always sit in one warp (TPCB lanes: the power of
// two at or above min(N, 32), divided by MAMBA_SCAN_BWD_STATES; SPTB states each), so every sum over states is a
// shuffle butterfly and every sum over a warp's channels too; only the sum over the block's warps goes through
// shared memory.
__host__ __device__ constexpr int clog2(int x) { return x <= 1 ? 0 : 1 + clog2(x / 2); }
constexpr int TPCB = cmax(1, (1 << clog2(2 * cmin(N, 32) - 1)) / MAMBA_SCAN_BWD_STATES);
// States per thread: a power of two where a warp holds several channels, so the channel sums below halve evenly.
constexpr int SPTB = TPCB < 32 ? 1 << clog2(2 * ((N + TPCB - 1) / TPCB) - 1) : (N + TPCB - 1) / TPCB;
[[maybe_unused]] constexpr bool PADDED = TPCB * SPTB != N;             // lanes whose state index is past N
#ifdef MAMBA_SCAN_BWD_TILE
constexpr int TTB = MAMBA_SCAN_BWD_TILE;
#else
constexpr int TTB = cmin(CHUNK, SPTB >= 8 ? 4 : SPTB >= 2 ? 8 : 16);   // steps recomputed and walked in registers
#endif
constexpr int BWD_THREADS = cmax(1, MAMBA_SCAN_BWD_THREADS / 32) * 32;
constexpr int BWD_WARPS = BWD_THREADS / 32;
constexpr int BWD_CPB = BWD_THREADS / TPCB;
constexpr int BWD_BLOCKS_PER_BATCH = (ED + BWD_CPB - 1) / BWD_CPB;
constexpr int BWD_TILES = CHUNK / TTB;
static_assert(TTB >= 4 && (TTB & (TTB - 1)) == 0 && CHUNK % TTB == 0, "backward tiles: a power of two >= 4 dividing the chunk");
// Sums over states: butterflies over lane bits TPCB/2 .. 1; the first SCAT_N levels scatter (each lane keeps half the
// steps), so lane j ends with R steps' totals, steps (j / O_SN)·R ...; lanes with j % O_SN == 0 finish them.
constexpr int SCAT_N = cmin(clog2(TPCB), clog2(TTB));
constexpr int O_SN = TPCB >> SCAT_N;
constexpr int R_STEPS = TTB >> SCAT_N;
// Per-time dB/dC summed over a warp's channels: butterflies over lane bits 16 .. TPCB on SPTB·TTB values per lane,
// scattering while values are left; lane l then holds LC of them, the (l / O_SD)-th run of the (state, step) list.
constexpr int LEN_D = SPTB * TTB;
constexpr int SCAT_D = cmin(clog2(32 / TPCB), clog2(LEN_D));
[[maybe_unused]] constexpr int O_SD = 32 >> SCAT_D;
constexpr int LC = LEN_D >> SCAT_D;
static_assert(TPCB == 32 || (LEN_D & (LEN_D - 1)) == 0, "channel sums halve a power-of-two list");
constexpr int KINDS = MAMBA_SELECTIVE_B + MAMBA_SELECTIVE_C;   // per-time gradients reduced across channels
// Blocks per SM the backward's register budget must allow (__launch_bounds__; 0: no demand). 256-thread blocks ask
// for 2 (at most 128 registers), so the two blocks that their shared memory allows stay resident; 128-thread blocks
// are left to the compiler's default.
#ifndef MAMBA_SCAN_BWD_MIN_BLOCKS
#define MAMBA_SCAN_BWD_MIN_BLOCKS (MAMBA_SCAN_BWD_THREADS >= 256 ? 512 / MAMBA_SCAN_BWD_THREADS : 0)
#endif
// Staging of the next chunk during pass 2 (see the backward): a tile's channel steps and state steps per thread.
// PREFETCH: their loads are issued at the tile's start and held in registers while the tile computes, where that
// takes at most 12 registers (8 <= N <= 64 with selective Δ and z); otherwise each is loaded just before it is
// stored.
#ifndef MAMBA_SCAN_BWD_PREFETCH
#define MAMBA_SCAN_BWD_PREFETCH 1
#endif
constexpr int PF_CH = (BWD_CPB * TTB + BWD_THREADS - 1) / BWD_THREADS;
constexpr int PF_ST = (N * TTB + BWD_THREADS - 1) / BWD_THREADS;
constexpr bool PREFETCH = MAMBA_SCAN_BWD_PREFETCH &&
                          PF_CH * (2 + MAMBA_SELECTIVE_DELTA + MAMBA_HAS_Z) + KINDS * PF_ST <= 12;
struct BwdRaw { float v, u, g, z; bool ok; };      // one channel step as loaded: dt + bias, u, dout, z

// Backward shared memory (floats): the whole chunk staged once (per-channel rows, B/C rows), the warps' dB/dC
// partials of a tile (double-buffered: one barrier per tile), each thread's state at every tile start.
constexpr int CHP = CHUNK + 4;                      // padded row (float4 reads of different rows hit different banks)
constexpr int BS_ROW = BWD_CPB * CHP;
constexpr int B_OFF_DELTA = 0;
constexpr int B_OFF_DU = B_OFF_DELTA + BS_ROW;      // Δ·u
constexpr int B_OFF_DY = B_OFF_DU + BS_ROW;         // dout·silu(z): gradient of y before the gate
constexpr int B_OFF_U = B_OFF_DY + BS_ROW;
constexpr int B_OFF_DSP = B_OFF_U + BS_ROW;         // softplus'(dt + bias)
constexpr int B_OFF_DZF = B_OFF_DSP + BS_ROW;       // dout·silu'(z): dz = this · y before the gate
constexpr int B_OFF_B = B_OFF_DZF + (MAMBA_HAS_Z ? BS_ROW : 0);
constexpr int B_OFF_C = B_OFF_B + (MAMBA_SELECTIVE_B ? N * CHP : 0);
constexpr int B_OFF_RED = B_OFF_C + (MAMBA_SELECTIVE_C ? N * CHP : 0);
constexpr int B_RED = BWD_WARPS * 32 * LC;          // one kind's warp partials of one tile
constexpr int B_OFF_HS = B_OFF_RED + 2 * KINDS * B_RED;
constexpr int B_FLOATS = B_OFF_HS + BWD_TILES * SPTB * BWD_THREADS;
static_assert(F_FLOATS * 4 <= 232448 && FwdWide::FLOATS * 4 <= 232448 && B_FLOATS * 4 <= 232448, "the scan's shared memory exceeds the 227 KB a block may have");

// Butterfly over the lane bits O, O/2, ..., O_LO (powers of two) on LEN values per lane, in a fixed order: while
// more than one value is left each level scatters (the lane with the bit set keeps the upper half, the other the
// lower half, each adding its partner's copy), after that it sums the single value.
template <int O, int O_LO, int LEN>
__device__ __forceinline__ void lane_reduce(float* v, int lane)
{
    if constexpr (O >= O_LO && O >= 1)
    {
        if constexpr (LEN >= 2)
        {
            const bool upper = (lane & O) != 0;
#pragma unroll
            for (int i = 0; i < LEN / 2; ++i)
            {
                const float send = upper ? v[i] : v[i + LEN / 2];
                const float keep = upper ? v[i + LEN / 2] : v[i];
                v[i] = keep + __shfl_xor_sync(0xffffffffu, send, O);
            }
            lane_reduce<O / 2, O_LO, LEN / 2>(v, lane);
        }
        else
        {
            v[0] += __shfl_xor_sync(0xffffffffu, v[0], O);
            lane_reduce<O / 2, O_LO, 1>(v, lane);
        }
    }
}

} // namespace mg_scan

// Launch facts for the host: read with cuModuleGetGlobal. Grid = batch × blocks_per_batch blocks (1-D).
// [0] forward threads, [1] forward blocks per batch row, [2] forward dynamic shared bytes, [3] chunk length,
// [4] backward threads, [5] backward blocks per batch row, [6] backward dynamic shared bytes, [7] N.
// The forward entries are the narrow forward's; mamba_scan_fwd_plan has the wide one's and the L split's.
extern "C" __constant__ int mamba_scan_config[8] = {
    mg_scan::FWD_THREADS, mg_scan::FWD_BLOCKS_PER_BATCH, mg_scan::F_FLOATS * 4, mg_scan::CHUNK,
    mg_scan::BWD_THREADS, mg_scan::BWD_BLOCKS_PER_BATCH, mg_scan::B_FLOATS * 4, mg_scan::N};

// The forward's plan, for the host: [0] wide threads, [1] wide blocks per batch row, [2] wide dynamic shared bytes,
// [3] rows (batch·ED) from which the wide forward runs, [4] blocks per SM below which L is split, [5] shortest
// segment in steps, [6] threads per block of mamba_scan_fwd_combine, [7] blocks per SM a split aims for. The host's
// rule: wide = batch·ED ≥ [3]; blocks = batch × (blocks per row of that forward); if blocks < [4] × SMs and
// L ≥ 2·[5], segments = min(⌈[7] × SMs / blocks⌉, ⌊L / [5]⌋), else 1. With segments > 1: mamba_scan_fwd_ends (or
// _wide_ends), then mamba_scan_fwd_combine, then the forward, the two scans on a (blocks, segments) grid.
extern "C" __constant__ int mamba_scan_fwd_plan[8] = {
    mg_scan::FwdWide::THREADS, mg_scan::FwdWide::BLOCKS_PER_BATCH, mg_scan::FwdWide::FLOATS * 4,
    MAMBA_SCAN_FWD_WIDE_MIN_ROWS, MAMBA_SCAN_FWD_SPLIT_BELOW,
    mg_scan::cmax(MAMBA_SCAN_FWD_MIN_SEGMENT, 2 * mg_scan::CHUNK), mg_scan::COMBINE_THREADS,
    MAMBA_SCAN_FWD_SPLIT_TARGET};

namespace mg_scan {

// Steps in each of the `segments` pieces the forward splits L into (gridDim.y of the scans, the combine's
// argument): whole chunks, at least two per segment, because pass 1 keeps a segment's decay product in the chunk
// slot before its end. One segment is the whole sequence.
__device__ __forceinline__ int segment_length(int L, int segments)
{
    if (segments <= 1) return L;
    const int steps = (L + segments - 1) / segments;
    return cmax(2 * CHUNK, (steps + CHUNK - 1) / CHUNK * CHUNK);
}

// The forward over one segment of the sequence (blockIdx.y; the whole sequence when gridDim.y is 1) for the channels
// of one block. ENDS_ONLY (pass 1 of a split): the state recurrence alone from a zero state, for every segment but
// the last; it stores the segment's end state in the chunk slot of its end and exp2(A2·ΣΔ), the product of the
// segment's decays, in the slot before. mamba_scan_fwd_combine then makes the end slots true states, in order.
// Otherwise (pass 2, or no split): y and the chunk states from the true start state, which for a later segment is
// the end slot of the one before; a segment that is not the last leaves its own end slot to the combine (the same
// state, summed in a different order), so no slot has two writers.
template <class S, bool ENDS_ONLY>
__device__ __forceinline__ void scan_forward(const mg_in_t* __restrict__ u, const mg_in_t* __restrict__ dt,
                                             const float* __restrict__ dt_bias, const float* __restrict__ A2,
                                             const b_t* __restrict__ Bm, const c_t* __restrict__ Cm,
                                             const float* __restrict__ Dv, const mg_in_t* __restrict__ z,
                                             mg_in_t* __restrict__ y, float* __restrict__ chunk_states, int L)
{
    constexpr int TPC = S::TPC, SPT = S::SPT, TT = S::TT, ROW = S::ROW, THREADS = S::THREADS, CPB = S::CPB;
    constexpr bool SHUFFLE = S::SHUFFLE;
    constexpr bool WITH_Z = MAMBA_HAS_Z && !ENDS_ONLY;
    [[maybe_unused]] constexpr bool WITH_C = MAMBA_SELECTIVE_C && !ENDS_ONLY;
    extern __shared__ float4 smem4[];
    float* smem = reinterpret_cast<float*>(smem4);
    constexpr int CH_PER_THREAD = (S::S_CH + THREADS - 1) / THREADS;
    constexpr int ST_PER_THREAD = (N * TT + THREADS - 1) / THREADS;

    const int seg_len = segment_length(L, gridDim.y);
    const int t_begin = blockIdx.y * seg_len;
    if (t_begin >= L) return;
    const int t_end = cmin(L, t_begin + seg_len);
    const bool last_segment = t_end == L;
    if (ENDS_ONLY && last_segment) return;

    const int tid = threadIdx.x;
    const int b = blockIdx.x / S::BLOCKS_PER_BATCH;
    const int d0 = (blockIdx.x % S::BLOCKS_PER_BATCH) * CPB;
    const int c = tid / TPC, j = tid % TPC;
    const int d = d0 + c;
    const bool active = d < ED;
    const int rows = cmin(CPB, ED - d0);
    const long long chan_base = ((long long)b * ED + d0) * L;
    const long long state_base = (long long)b * N * L;
    const int chunks = (L + CHUNK - 1) / CHUNK;
    float* my_states = chunk_states + ((long long)b * ED + d) * chunks * N;   // slot k, state n: [k·N + n]

    float a2[SPT], h[SPT];
#if !MAMBA_SELECTIVE_B
    float bconst[SPT];
#endif
#if !MAMBA_SELECTIVE_C
    [[maybe_unused]] float cconst[SPT];
#endif
#pragma unroll
    for (int s = 0; s < SPT; ++s)
    {
        const int n = j + s * TPC;
        const bool ok = active && n < N;
        a2[s] = ok ? A2[d * N + n] : 0.f;
        h[s] = ok && !ENDS_ONLY && t_begin > 0 ? my_states[(t_begin / CHUNK - 1) * N + n] : 0.f;
#if !MAMBA_SELECTIVE_B
        bconst[s] = ok ? Bm[d * N + n] : 0.f;
#endif
#if !MAMBA_SELECTIVE_C
        cconst[s] = ok ? Cm[d * N + n] : 0.f;
#endif
    }
    [[maybe_unused]] float delta_sum = 0.f;   // ENDS_ONLY: Σ Δ over the segment

    float* s_bias = smem + S::OFF_PARAM;
    float* s_D = s_bias + CPB;
    for (int r = tid; r < CPB; r += THREADS)
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
            const int e = tid + i * THREADS, row = e / TT, t = e % TT;
            const bool ok = e < S::S_CH && row < rows && t0 + t < L;
            const long long at = chan_base + (long long)row * L + t0 + t;
            r_u[i] = ok ? mg_load(u + at) : 0.f;
#if MAMBA_SELECTIVE_DELTA
            r_dt[i] = ok ? mg_load(dt + at) : 0.f;
#endif
            if constexpr (WITH_Z) r_z[i] = ok ? mg_load(z + at) : 0.f;
        }
#pragma unroll
        for (int i = 0; i < ST_PER_THREAD; ++i)
        {
            const int e = tid + i * THREADS, n = e / TT, t = e % TT;
            [[maybe_unused]] const bool ok = e < N * TT && t0 + t < L;
            [[maybe_unused]] const long long at = state_base + (long long)n * L + t0 + t;
#if MAMBA_SELECTIVE_B
            r_b[i] = ok ? mg_load(Bm + at) : 0.f;
#endif
#if MAMBA_SELECTIVE_C
            if constexpr (WITH_C) r_c[i] = ok ? mg_load(Cm + at) : 0.f;
#endif
        }
    };

    load_tile(t_begin);
    for (int t0 = t_begin, k = 0; t0 < t_end; t0 += TT, ++k)
    {
        const int buf = k & 1;
        float* s_delta = smem + S::OFF_DELTA + buf * S::S_CH;
        float* s_du = smem + S::OFF_DU + buf * S::S_CH;
        float* s_u = smem + S::OFF_U + buf * S::S_CH;
        [[maybe_unused]] float* s_z = smem + S::OFF_Z + buf * S::S_CH;
        [[maybe_unused]] float* s_b = smem + S::OFF_B + buf * S::S_ST;
        [[maybe_unused]] float* s_c = smem + S::OFF_C + buf * S::S_ST;
        float* s_p = smem + S::OFF_P + buf * S::S_P;

#pragma unroll
        for (int i = 0; i < CH_PER_THREAD; ++i)
        {
            const int e = tid + i * THREADS, row = e / TT, t = e % TT;
            if (e < S::S_CH)
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
                if constexpr (!ENDS_ONLY) s_u[e] = r_u[i];
                if constexpr (WITH_Z) s_z[e] = r_z[i];
            }
        }
#pragma unroll
        for (int i = 0; i < ST_PER_THREAD; ++i)
        {
            [[maybe_unused]] const int e = tid + i * THREADS, n = e / TT, t = e % TT;
            if (e < N * TT)
            {
#if MAMBA_SELECTIVE_B
                s_b[n * ROW + t] = r_b[i];
#endif
#if MAMBA_SELECTIVE_C
                if constexpr (WITH_C) s_c[n * ROW + t] = r_c[i];
#endif
            }
        }
        if (t0 + TT < t_end) load_tile(t0 + TT);
        __syncthreads();

        // The recurrence: SPT states of channel c, TT steps, one exp each.
        [[maybe_unused]] float pt[TT];
#pragma unroll
        for (int t4 = 0; t4 < TT; t4 += 4)
        {
            const float4 dl = *reinterpret_cast<const float4*>(s_delta + c * TT + t4);
            const float4 du = *reinterpret_cast<const float4*>(s_du + c * TT + t4);
            if constexpr (ENDS_ONLY) delta_sum += (dl.x + dl.y) + (dl.z + dl.w);
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
                float hs = h[s];
                if constexpr (ENDS_ONLY)
                {
                    hs = fmaf(mg_exp2(a2[s] * dl.x), hs, du.x * bv.x);
                    hs = fmaf(mg_exp2(a2[s] * dl.y), hs, du.y * bv.y);
                    hs = fmaf(mg_exp2(a2[s] * dl.z), hs, du.z * bv.z);
                    hs = fmaf(mg_exp2(a2[s] * dl.w), hs, du.w * bv.w);
                }
                else
                {
#if MAMBA_SELECTIVE_C
                    const float4 cv = *reinterpret_cast<const float4*>(s_c + n * ROW + t4);
#else
                    const float4 cv = make_float4(cconst[s], cconst[s], cconst[s], cconst[s]);
#endif
                    hs = fmaf(mg_exp2(a2[s] * dl.x), hs, du.x * bv.x); p0 = fmaf(cv.x, hs, p0);
                    hs = fmaf(mg_exp2(a2[s] * dl.y), hs, du.y * bv.y); p1 = fmaf(cv.y, hs, p1);
                    hs = fmaf(mg_exp2(a2[s] * dl.z), hs, du.z * bv.z); p2 = fmaf(cv.z, hs, p2);
                    hs = fmaf(mg_exp2(a2[s] * dl.w), hs, du.w * bv.w); p3 = fmaf(cv.w, hs, p3);
                }
                h[s] = hs;
            }
            if constexpr (ENDS_ONLY) continue;
            if constexpr (SHUFFLE)
            {
                pt[t4] = p0; pt[t4 + 1] = p1; pt[t4 + 2] = p2; pt[t4 + 3] = p3;
            }
            else
                *reinterpret_cast<float4*>(s_p + tid * ROW + t4) = make_float4(p0, p1, p2, p3);
        }
        if constexpr (ENDS_ONLY) continue;

        // The state after each whole chunk, and the final state; a segment's own end slot is the combine's.
        const int t_next = t0 + TT;
        if (t_next < t_end ? t_next % CHUNK == 0 : last_segment)
        {
#pragma unroll
            for (int s = 0; s < SPT; ++s)
            {
                const int n = j + s * TPC;
                if (active && n < N) my_states[(t0 / CHUNK) * N + n] = h[s];
            }
        }
        if constexpr (SHUFFLE)
        {
            constexpr int R = TT / TPC;
            lane_reduce<TPC / 2, 1, TT>(pt, j);   // reduce-scatter: lane j keeps steps j·TT/TPC … of the totals
#pragma unroll
            for (int i = 0; i < R; ++i)
            {
                const int t = j * R + i;
                if (!active || t0 + t >= L) break;
                float v = fmaf(s_D[c], s_u[c * TT + t], pt[i]);
                if constexpr (WITH_Z) v *= mg_silu(s_z[c * TT + t]);
                mg_store(y + chan_base + (long long)c * L + t0 + t, v);
            }
            continue;
        }
        __syncthreads();

        // y = Σ_n C·h + D·u, gated; four consecutive steps per thread, states summed in index order.
        for (int e = tid; e < CPB * (TT / 4); e += THREADS)
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
                if constexpr (WITH_Z) v *= mg_silu(s_z[row * TT + t]);
                mg_store(y + chan_base + (long long)row * L + t0 + t, v);
            }
        }
    }

    if constexpr (ENDS_ONLY)
    {
        const int end_slot = t_end / CHUNK - 1;
#pragma unroll
        for (int s = 0; s < SPT; ++s)
        {
            const int n = j + s * TPC;
            if (!active || n >= N) continue;
            my_states[end_slot * N + n] = h[s];
            my_states[(end_slot - 1) * N + n] = mg_exp2(a2[s] * delta_sum);
        }
    }
}

} // namespace mg_scan

// The forward entry points: narrow and wide work splits, each as the scan (whole sequence, or pass 2 of a split)
// and as pass 1 of a split. Pass 1 takes the same arguments so the host launches both alike; it reads u, dt,
// dt_bias, A2, B and writes only chunk_states.
#define MAMBA_SCAN_FWD_ENTRY(NAME, SPLIT, ENDS_ONLY)                                                                \
    extern "C" __global__ void __launch_bounds__(SPLIT::THREADS)                                                    \
    NAME(const mg_in_t* __restrict__ u, const mg_in_t* __restrict__ dt, const float* __restrict__ dt_bias,          \
         const float* __restrict__ A2, const mg_scan::b_t* __restrict__ Bm, const mg_scan::c_t* __restrict__ Cm,    \
         const float* __restrict__ Dv, const mg_in_t* __restrict__ z, mg_in_t* __restrict__ y,                      \
         float* __restrict__ chunk_states, int L)                                                                   \
    {                                                                                                               \
        mg_scan::scan_forward<SPLIT, ENDS_ONLY>(u, dt, dt_bias, A2, Bm, Cm, Dv, z, y, chunk_states, L);             \
    }
MAMBA_SCAN_FWD_ENTRY(mamba_scan_fwd, mg_scan::FwdNarrow, false)
MAMBA_SCAN_FWD_ENTRY(mamba_scan_fwd_ends, mg_scan::FwdNarrow, true)
MAMBA_SCAN_FWD_ENTRY(mamba_scan_fwd_wide, mg_scan::FwdWide, false)
MAMBA_SCAN_FWD_ENTRY(mamba_scan_fwd_wide_ends, mg_scan::FwdWide, true)
#undef MAMBA_SCAN_FWD_ENTRY

// Between the two passes of a split forward: one thread per (batch, channel, state) walks the segment ends in order,
// h ← P·h + h_local (P the segment's decay product, h_local its end state from zero), and leaves the true states in
// the end slots. Fixed order: deterministic.
extern "C" __global__ void __launch_bounds__(mg_scan::COMBINE_THREADS)
mamba_scan_fwd_combine(float* __restrict__ chunk_states, int batch, int L, int segments)
{
    using namespace mg_scan;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)batch * ED * N) return;
    const int seg_len = segment_length(L, segments);
    const int chunks = (L + CHUNK - 1) / CHUNK;
    float* states = chunk_states + (i / N) * chunks * N + i % N;
    float h = 0.f;
    for (int end = seg_len; end < L; end += seg_len)
    {
        const int slot = end / CHUNK - 1;
        h = fmaf(states[(slot - 1) * N], h, states[slot * N]);
        states[slot * N] = h;
    }
}

// Backward. Outputs: du, ddt (gradient of dt before the softplus; selective Δ only), dz (with z), and fp32
// partials finished by mg_sum_slices:
//   part_dB / part_dC: variable → (BWD_BLOCKS_PER_BATCH, batch, N, L), summed over slice 0; constant → (batch, ED, N)
//   part_dA (batch, ED, N), part_dD (batch, ED), part_dbias (batch, ED): summed over batch.
// Per chunk, last first: the chunk's inputs are staged in shared memory once (see the chunk loop); pass 1 runs the
// forward from the saved chunk state and keeps each tile's start state; pass 2 takes the tiles last to first,
// recomputes the tile's decays and states in registers and walks it backwards. Every sum (over states, over
// channels) is a butterfly or a loop in a fixed order and each output has one writer: the backward is bit-identical
// run to run.
extern "C" __global__ void __launch_bounds__(mg_scan::BWD_THREADS, MAMBA_SCAN_BWD_MIN_BLOCKS)
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

    const int tid = threadIdx.x, lane = tid & 31;
    [[maybe_unused]] const int warp = tid >> 5;
    const int b = blockIdx.x / BWD_BLOCKS_PER_BATCH;
    const int cb = blockIdx.x % BWD_BLOCKS_PER_BATCH;
    const int d0 = cb * BWD_CPB;
    const int c = tid / TPCB, j = tid % TPCB;
    const int d = d0 + c;
    const bool active = d < ED;
    const int rows = cmin(BWD_CPB, ED - d0);
    const long long chan_base = ((long long)b * ED + d0) * L;
    [[maybe_unused]] const long long state_base = (long long)b * N * L;
    const int chunks = (L + CHUNK - 1) / CHUNK;

    float* s_delta = smem + B_OFF_DELTA;
    float* s_du = smem + B_OFF_DU;
    float* s_dy = smem + B_OFF_DY;
    float* s_u = smem + B_OFF_U;
    float* s_dsp = smem + B_OFF_DSP;
    [[maybe_unused]] float* s_dzf = smem + B_OFF_DZF;
    [[maybe_unused]] float* s_b = smem + B_OFF_B;
    [[maybe_unused]] float* s_c = smem + B_OFF_C;
    [[maybe_unused]] float* s_red = smem + B_OFF_RED;
    float* s_hs = smem + B_OFF_HS;

    // Per (channel, state) constants and sums. A padded lane (state index past N) gets B = C = 0, so it stays 0.
    float a2[SPTB], anat[SPTB], acc_dA[SPTB], carry[SPTB];   // carry: a_{t+1}·g_{t+1}, the reverse state into step t
    [[maybe_unused]] int row_n[SPTB];                                         // the state's row in s_b / s_c (0 for a padded lane)
    [[maybe_unused]] float live[SPTB];
#if !MAMBA_SELECTIVE_B
    float bconst[SPTB], acc_dB[SPTB];
#endif
#if !MAMBA_SELECTIVE_C
    float cconst[SPTB], acc_dC[SPTB];
#endif
#pragma unroll
    for (int s = 0; s < SPTB; ++s)
    {
        const int n = j + s * TPCB;
        const bool ok = active && n < N;
        row_n[s] = n < N ? n : 0;
        live[s] = n < N ? 1.f : 0.f;
        a2[s] = ok ? A2[d * N + n] : 0.f;
        anat[s] = a2[s] * MG_LN2;
        acc_dA[s] = carry[s] = 0.f;
#if !MAMBA_SELECTIVE_B
        bconst[s] = ok ? Bm[d * N + n] : 0.f;
        acc_dB[s] = 0.f;
#endif
#if !MAMBA_SELECTIVE_C
        cconst[s] = ok ? Cm[d * N + n] : 0.f;
        acc_dC[s] = 0.f;
#endif
    }
    const float dd = active ? Dv[d] : 0.f;
    float acc_dD = 0.f, acc_dbias = 0.f;

    // B_t, C_t of state s for four steps from local step lt (constant B/C: the parameter).
    auto load_b4 = [&](int s, int lt) {
#if MAMBA_SELECTIVE_B
        float4 v = *reinterpret_cast<const float4*>(s_b + row_n[s] * CHP + lt);
        if constexpr (PADDED) { v.x *= live[s]; v.y *= live[s]; v.z *= live[s]; v.w *= live[s]; }
        return v;
#else
        return make_float4(bconst[s], bconst[s], bconst[s], bconst[s]);
#endif
    };
    auto load_c4 = [&](int s, int lt) {
#if MAMBA_SELECTIVE_C
        float4 v = *reinterpret_cast<const float4*>(s_c + row_n[s] * CHP + lt);
        if constexpr (PADDED) { v.x *= live[s]; v.y *= live[s]; v.z *= live[s]; v.w *= live[s]; }
        return v;
#else
        return make_float4(cconst[s], cconst[s], cconst[s], cconst[s]);
#endif
    };

    // Staging, split into loads (into registers) and stores of what the two passes read. Per channel Δ, Δ·u, dy,
    // u, softplus', dout·silu'(z); per state B, C. Steps past L and channels past ED get zeros (Δ = 0 leaves the
    // state unchanged, dy = 0 adds nothing).
    auto load_channel = [&](int row, int t) {    // row: channel in the block; t: absolute step
        BwdRaw r{};
        r.ok = row < rows && t < L;
        const long long at = chan_base + (long long)row * L + t;
        const float bias = row < rows ? dt_bias[d0 + row] : 0.f;
#if MAMBA_SELECTIVE_DELTA
        r.v = r.ok ? mg_load(dt + at) + bias : 0.f;
#else
        r.v = bias;
#endif
        r.u = r.ok ? mg_load(u + at) : 0.f;
        r.g = r.ok ? mg_load(dout + at) : 0.f;
#if MAMBA_HAS_Z
        r.z = r.ok ? mg_load(z + at) : 0.f;
#endif
        return r;
    };
    auto put_channel = [&](int i, const BwdRaw& r) {   // i: index in the per-channel rows
        const float delta = r.ok ? mg_softplus(r.v) : 0.f;
#if MAMBA_HAS_Z
        s_dy[i] = r.g * mg_silu(r.z);
        s_dzf[i] = r.g * mg_silu_grad(r.z);
#else
        s_dy[i] = r.g;
#endif
        s_delta[i] = delta;
        s_du[i] = delta * r.u;
        s_u[i] = r.u;
        s_dsp[i] = r.ok ? mg_softplus_grad(r.v) : 0.f;
    };
    auto load_state_in = [&](int n, int t, float& bv, float& cv) {   // B_t[n], C_t[n] (t: absolute step)
        [[maybe_unused]] const bool ok = t < L;
        [[maybe_unused]] const long long at = state_base + (long long)n * L + t;
#if MAMBA_SELECTIVE_B
        bv = ok ? mg_load(Bm + at) : 0.f;
#endif
#if MAMBA_SELECTIVE_C
        cv = ok ? mg_load(Cm + at) : 0.f;
#endif
    };
    auto put_state_in = [&](int i, float bv, float cv) {
#if MAMBA_SELECTIVE_B
        s_b[i] = bv;
#endif
#if MAMBA_SELECTIVE_C
        s_c[i] = cv;
#endif
    };
    // The whole chunk from step ts (the last chunk, before the loop; the others are staged a tile at a time below).
    auto stage = [&](int ts) {
        for (int e = tid; e < BWD_CPB * CHUNK; e += BWD_THREADS)
        {
            const int row = e / CHUNK, t = e % CHUNK;
            put_channel(row * CHP + t, load_channel(row, ts + t));
        }
#if MAMBA_SELECTIVE_B || MAMBA_SELECTIVE_C
        for (int e = tid; e < N * CHUNK; e += BWD_THREADS)
        {
            const int n = e / CHUNK, t = e % CHUNK;
            float bv = 0.f, cv = 0.f;
            load_state_in(n, ts + t, bv, cv);
            put_state_in(n * CHP + t, bv, cv);
        }
#endif
    };
    // With PREFETCH: tile q of the chunk from step ts, PF_CH channel steps and PF_ST state steps per thread, loaded
    // into registers, then stored.
    [[maybe_unused]] BwdRaw pf_ch[PF_CH];
    [[maybe_unused]] float pf_b[PF_ST], pf_c[PF_ST];
    [[maybe_unused]] auto load_tile = [&](int ts, int q) {
#pragma unroll
        for (int k = 0; k < PF_CH; ++k)
        {
            const int e = tid + k * BWD_THREADS;
            pf_ch[k] = load_channel(e < BWD_CPB * TTB ? e / TTB : BWD_CPB, ts + q * TTB + e % TTB);
        }
#if MAMBA_SELECTIVE_B || MAMBA_SELECTIVE_C
#pragma unroll
        for (int k = 0; k < PF_ST; ++k)
        {
            const int e = tid + k * BWD_THREADS;
            pf_b[k] = pf_c[k] = 0.f;
            if (e < N * TTB) load_state_in(e / TTB, ts + q * TTB + e % TTB, pf_b[k], pf_c[k]);
        }
#endif
    };
    [[maybe_unused]] auto put_tile = [&](int q) {
#pragma unroll
        for (int k = 0; k < PF_CH; ++k)
        {
            const int e = tid + k * BWD_THREADS;
            if (e < BWD_CPB * TTB) put_channel((e / TTB) * CHP + q * TTB + e % TTB, pf_ch[k]);
        }
#if MAMBA_SELECTIVE_B || MAMBA_SELECTIVE_C
#pragma unroll
        for (int k = 0; k < PF_ST; ++k)
        {
            const int e = tid + k * BWD_THREADS;
            if (e < N * TTB) put_state_in((e / TTB) * CHP + q * TTB + e % TTB, pf_b[k], pf_c[k]);
        }
#endif
    };
    // Without PREFETCH: each step loaded and stored in turn, so only one is held in registers.
    [[maybe_unused]] auto stage_tile = [&](int ts, int q) {
        for (int e = tid; e < BWD_CPB * TTB; e += BWD_THREADS)
            put_channel((e / TTB) * CHP + q * TTB + e % TTB, load_channel(e / TTB, ts + q * TTB + e % TTB));
#if MAMBA_SELECTIVE_B || MAMBA_SELECTIVE_C
        for (int e = tid; e < N * TTB; e += BWD_THREADS)
        {
            float bv = 0.f, cv = 0.f;
            load_state_in(e / TTB, ts + q * TTB + e % TTB, bv, cv);
            put_state_in((e / TTB) * CHP + q * TTB + e % TTB, bv, cv);
        }
#endif
    };
    // The saved state a chunk starts from (zero for the first).
    auto load_start_state = [&](float* hh, int kc) {
#pragma unroll
        for (int s = 0; s < SPTB; ++s)
            hh[s] = (kc > 0 && active && j + s * TPCB < N)
                        ? chunk_states[(((long long)b * ED + d) * chunks + kc - 1) * N + j + s * TPCB] : 0.f;
    };

#if MAMBA_SELECTIVE_B || MAMBA_SELECTIVE_C
    // A warp's channel-summed partials of one kind (LC values per lane) into buffer `buf`.
    auto put_red = [&](const float* v, int buf, int kind) {
        float* dst = s_red + ((buf * KINDS + kind) * BWD_WARPS + warp) * 32 * LC + lane * LC;
#pragma unroll
        for (int i = 0; i < LC; ++i) dst[i] = v[i];
    };
    // dB/dC of one tile: the warps' partials summed in warp order, one store per (state, step) per block.
    const long long part_base = ((long long)cb * batch + b) * N * (long long)L;
    auto flush = [&](int buf, int t0) {
        constexpr int OUTPUTS = KINDS * N * TTB;
#pragma unroll
        for (int k = 0; k < (OUTPUTS + BWD_THREADS - 1) / BWD_THREADS; ++k)
        {
            const int e = tid + k * BWD_THREADS;
            if (e >= OUTPUTS) break;
            const int kind = e / (N * TTB), r = e % (N * TTB), n = r / TTB, t = r % TTB;
            const int i = (n / TPCB) * TTB + t;                     // index in a lane's (state, step) list
            const int src = (i / LC) * O_SD + n % TPCB;              // the lane that holds it after lane_reduce
            const float* red = s_red + (buf * KINDS + kind) * B_RED + src * LC + i % LC;
            float acc = 0.f;
#pragma unroll
            for (int w = 0; w < BWD_WARPS; ++w) acc += red[w * 32 * LC];
            if (t0 + t >= L) continue;
            const long long at = part_base + (long long)n * L + t0 + t;
#if MAMBA_SELECTIVE_B && MAMBA_SELECTIVE_C
            (kind == 0 ? part_dB : part_dC)[at] = acc;
#elif MAMBA_SELECTIVE_B
            part_dB[at] = acc;
#else
            part_dC[at] = acc;
#endif
        }
    };
    int buf = 0;
#endif

    // Chunks last first. The last is staged whole here; each earlier one is staged a tile at a time during the pass 2
    // of the chunk after it: tile q's columns are free once every warp has finished tile q (the barrier at its end),
    // and with PREFETCH its loads are issued at the tile's start, so they complete while the tile computes.
    // With PREFETCH the next chunk's start state is loaded a chunk ahead too.
    stage((chunks - 1) * CHUNK);
    [[maybe_unused]] float h_next[SPTB];
    if constexpr (PREFETCH) load_start_state(h_next, chunks - 1);
    for (int kc = chunks - 1; kc >= 0; --kc)
    {
        const int ts = kc * CHUNK;
        __syncthreads();   // the chunk is staged

        // Pass 1: forward over the chunk from its saved start state, keeping each tile's start state.
        float h[SPTB];
        if constexpr (PREFETCH)
        {
#pragma unroll
            for (int s = 0; s < SPTB; ++s) h[s] = h_next[s];
            if (kc > 0) load_start_state(h_next, kc - 1);
        }
        else
            load_start_state(h, kc);
        for (int q = 0; q < BWD_TILES; ++q)
        {
#pragma unroll
            for (int s = 0; s < SPTB; ++s) s_hs[(q * SPTB + s) * BWD_THREADS + tid] = h[s];
            if (q + 1 == BWD_TILES) break;
#pragma unroll
            for (int t4 = 0; t4 < TTB; t4 += 4)
            {
                const int lt = q * TTB + t4;
                const float4 dl = *reinterpret_cast<const float4*>(s_delta + c * CHP + lt);
                const float4 du = *reinterpret_cast<const float4*>(s_du + c * CHP + lt);
#pragma unroll
                for (int s = 0; s < SPTB; ++s)
                {
                    const float4 bv = load_b4(s, lt);
                    float hs = h[s];
                    hs = fmaf(mg_exp2(a2[s] * dl.x), hs, du.x * bv.x);
                    hs = fmaf(mg_exp2(a2[s] * dl.y), hs, du.y * bv.y);
                    hs = fmaf(mg_exp2(a2[s] * dl.z), hs, du.z * bv.z);
                    hs = fmaf(mg_exp2(a2[s] * dl.w), hs, du.w * bv.w);
                    h[s] = hs;
                }
            }
        }

        // Pass 2: tiles last to first.
        for (int q = BWD_TILES - 1; q >= 0; --q)
        {
            const int lt0 = q * TTB;
            [[maybe_unused]] const int t0 = ts + lt0;
            if constexpr (PREFETCH)
                if (kc > 0) load_tile(ts - CHUNK, q);
            float hprev0[SPTB];
#pragma unroll
            for (int s = 0; s < SPTB; ++s) hprev0[s] = s_hs[(q * SPTB + s) * BWD_THREADS + tid];

            // Recompute the tile's decays and states; C·h partials for y; dy·h for dC.
            float ak[TTB][SPTB], hk[TTB][SPTB], p[TTB];
            [[maybe_unused]] float dcv[LEN_D];
#pragma unroll
            for (int t4 = 0; t4 < TTB; t4 += 4)
            {
                const int lt = lt0 + t4;
                const float4 dl4 = *reinterpret_cast<const float4*>(s_delta + c * CHP + lt);
                const float4 du4 = *reinterpret_cast<const float4*>(s_du + c * CHP + lt);
                const float4 dy4 = *reinterpret_cast<const float4*>(s_dy + c * CHP + lt);
                const float dls[4] = {dl4.x, dl4.y, dl4.z, dl4.w}, dus[4] = {du4.x, du4.y, du4.z, du4.w};
                const float dys[4] = {dy4.x, dy4.y, dy4.z, dy4.w};
#pragma unroll
                for (int qq = 0; qq < 4; ++qq) p[t4 + qq] = 0.f;
#pragma unroll
                for (int s = 0; s < SPTB; ++s)
                {
                    const float4 bv = load_b4(s, lt), cv = load_c4(s, lt);
                    const float bs[4] = {bv.x, bv.y, bv.z, bv.w}, cs[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
                    for (int qq = 0; qq < 4; ++qq)
                    {
                        const int t = t4 + qq;
                        const float hp = t == 0 ? hprev0[s] : hk[t - 1][s];
                        const float a = mg_exp2(a2[s] * dls[qq]);
                        ak[t][s] = a;
                        hk[t][s] = fmaf(a, hp, dus[qq] * bs[qq]);
                        p[t] = fmaf(cs[qq], hk[t][s], p[t]);
#if MAMBA_SELECTIVE_C
                        dcv[s * TTB + t] = dys[qq] * hk[t][s];
#else
                        acc_dC[s] = fmaf(dys[qq], hk[t][s], acc_dC[s]);
#endif
                    }
                }
            }
#if MAMBA_SELECTIVE_C
            lane_reduce<16, TPCB, LEN_D>(dcv, lane);
            put_red(dcv, buf, KINDS - 1);
#endif
            lane_reduce<TPCB / 2, 1, TTB>(p, lane);

            // Walk the tile backwards in time: g = ∂loss/∂h_t. Per step, over this lane's states: Σ g·B (→ du),
            // Σ A·g·a·h_{t−1} (→ dΔ), and g·Δu (→ dB).
            float q1[TTB], q2[TTB];
            [[maybe_unused]] float dbv[LEN_D];
#pragma unroll
            for (int t4 = TTB - 4; t4 >= 0; t4 -= 4)
            {
                const int lt = lt0 + t4;
                const float4 dl4 = *reinterpret_cast<const float4*>(s_delta + c * CHP + lt);
                const float4 du4 = *reinterpret_cast<const float4*>(s_du + c * CHP + lt);
                const float4 dy4 = *reinterpret_cast<const float4*>(s_dy + c * CHP + lt);
                const float dls[4] = {dl4.x, dl4.y, dl4.z, dl4.w}, dus[4] = {du4.x, du4.y, du4.z, du4.w};
                const float dys[4] = {dy4.x, dy4.y, dy4.z, dy4.w};
#pragma unroll
                for (int qq = 0; qq < 4; ++qq) q1[t4 + qq] = q2[t4 + qq] = 0.f;
#pragma unroll
                for (int s = 0; s < SPTB; ++s)
                {
                    const float4 bv = load_b4(s, lt), cv = load_c4(s, lt);
                    const float bs[4] = {bv.x, bv.y, bv.z, bv.w}, cs[4] = {cv.x, cv.y, cv.z, cv.w};
#pragma unroll
                    for (int qq = 3; qq >= 0; --qq)
                    {
                        const int t = t4 + qq;
                        const float g = fmaf(cs[qq], dys[qq], carry[s]);
                        const float hp = t == 0 ? hprev0[s] : hk[t - 1][s];
                        const float gah = g * ak[t][s] * hp;
                        q1[t] = fmaf(g, bs[qq], q1[t]);
                        q2[t] = fmaf(anat[s], gah, q2[t]);
                        acc_dA[s] = fmaf(gah, dls[qq], acc_dA[s]);
#if MAMBA_SELECTIVE_B
                        dbv[s * TTB + t] = g * dus[qq];
#else
                        acc_dB[s] = fmaf(g, dus[qq], acc_dB[s]);
#endif
                        carry[s] = ak[t][s] * g;
                    }
                }
            }
#if MAMBA_SELECTIVE_B
            lane_reduce<16, TPCB, LEN_D>(dbv, lane);
            put_red(dbv, buf, 0);
#endif
            lane_reduce<TPCB / 2, 1, TTB>(q1, lane);
            lane_reduce<TPCB / 2, 1, TTB>(q2, lane);

            // This lane's R_STEPS steps: y before the gate (→ dz), du, dΔ.
            if (active && j % O_SN == 0)
            {
#pragma unroll
                for (int r = 0; r < R_STEPS; ++r)
                {
                    const int lt = lt0 + (j / O_SN) * R_STEPS + r;
                    if (ts + lt >= L) break;
                    const int i = c * CHP + lt;
                    const long long g_at = chan_base + (long long)c * L + ts + lt;
                    const float uu = s_u[i], dyt = s_dy[i];
#if MAMBA_HAS_Z
                    mg_store(dz_out + g_at, s_dzf[i] * fmaf(dd, uu, p[r]));
#endif
                    mg_store(du_out + g_at, fmaf(dyt, dd, s_delta[i] * q1[r]));
                    const float ddelta_in = fmaf(uu, q1[r], q2[r]) * s_dsp[i];
#if MAMBA_SELECTIVE_DELTA
                    mg_store(ddt_out + g_at, ddelta_in);
#endif
                    acc_dD = fmaf(dyt, uu, acc_dD);
                    acc_dbias += ddelta_in;
                }
            }
#if MAMBA_SELECTIVE_B || MAMBA_SELECTIVE_C
            __syncthreads();   // every warp's partials of this tile are in s_red[buf], and its columns are read
            flush(buf, t0);
            buf ^= 1;
#else
            if (kc > 0) __syncthreads();   // every warp has read this tile's columns
#endif
            if (kc > 0)
            {
                if constexpr (PREFETCH) put_tile(q);
                else stage_tile(ts - CHUNK, q);
            }
        }
    }

    // Per-(batch, channel) sums.
#pragma unroll
    for (int s = 0; s < SPTB; ++s)
    {
        const int n = j + s * TPCB;
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
    // dD and d dt_bias: the channel's finishing lanes hold them; a butterfly over its lanes gives the total.
#pragma unroll
    for (int o = TPCB / 2; o >= 1; o >>= 1)
    {
        acc_dD += __shfl_xor_sync(0xffffffffu, acc_dD, o);
        acc_dbias += __shfl_xor_sync(0xffffffffu, acc_dbias, o);
    }
    if (active && j == 0)
    {
        part_dD[(long long)b * ED + d] = acc_dD;
        part_dbias[(long long)b * ED + d] = acc_dbias;
    }
}
