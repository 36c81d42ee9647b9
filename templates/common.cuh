// MambaGen kernel templates: shared helpers, textually prepended by the generator ahead of every kernel template.
// Self-contained on purpose: no toolkit header is included, so the same text compiles with the Debian NVRTC 11.8
// (which ships none), with a CUDA 13 NVRTC on the GPU machine, and on a user's machine that has only the driver.
// bf16 values travel as raw 16-bit integers and are converted with bit operations or inline PTX.
#ifndef MAMBA_COMMON_CUH
#define MAMBA_COMMON_CUH

// 0: the activation tensors (u, dt, z, dout, y, per-time B/C and their gradients) are float; 1: they are raw bf16.
// Parameters (A, D, biases, constant B/C), states and all accumulation stay fp32 either way.
#ifndef MAMBA_INPUT_BF16
#define MAMBA_INPUT_BF16 0
#endif

// Hopper-only instructions (wgmma, setmaxnreg) are allowed only when the host says its NVRTC can emit them
// (NVRTC 11.8, the CI compiler, cannot target sm_90a) and the target architecture has them.
#if defined(MAMBA_ALLOW_SM90A) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define MAMBA_HOPPER_PATH 1
#else
#define MAMBA_HOPPER_PATH 0
#endif

typedef unsigned short mg_bf16;

#if MAMBA_INPUT_BF16
typedef mg_bf16 mg_in_t;
#else
typedef float mg_in_t;
#endif

#define MG_LOG2E 1.4426950408889634f
#define MG_LN2 0.6931471805599453f

__device__ __forceinline__ float mg_bf16_to_f32(mg_bf16 v) { return __uint_as_float(((unsigned int)v) << 16); }

// Round to nearest even, NaN stays NaN.
__device__ __forceinline__ mg_bf16 mg_f32_to_bf16(float f)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned short r;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
    return r;
#else
    unsigned int bits = __float_as_uint(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (mg_bf16)((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (mg_bf16)(bits >> 16);
#endif
}

__device__ __forceinline__ float mg_load(const float* p) { return *p; }
__device__ __forceinline__ float mg_load(const mg_bf16* p) { return mg_bf16_to_f32(*p); }
__device__ __forceinline__ void mg_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void mg_store(mg_bf16* p, float v) { *p = mg_f32_to_bf16(v); }

// 2^x on the special-function unit: one MUFU.EX2. Callers pre-scale by log2 e (A is passed as A·log2 e), so an
// exp costs one instruction; relative error about 2^-22, denormal results flush to zero (a decay that small is 0).
__device__ __forceinline__ float mg_exp2(float x)
{
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// log2 on the special-function unit (MUFU.LG2), absolute error about 2^-22.
__device__ __forceinline__ float mg_log2(float x)
{
    float r;
    asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
    return r;
}

// softplus as mamba_ssm and the CPU path define it: v > 20 ? v : log1p(exp(v)). Built on the special-function
// unit: for exp(v) < 1/64 the log1p series to x^4 (relative error < 1e-8), above it ln 2·log2(1 + x), whose absolute
// error 2^-22 is a relative error under 2e-5 there.
__device__ __forceinline__ float mg_softplus(float v)
{
    const float x = mg_exp2(v * MG_LOG2E);
    if (v > 20.f) return v;
    if (x < 0.015625f) return x * (1.f - x * (0.5f - x * (0.33333333f - 0.25f * x)));
    return mg_log2(1.f + x) * MG_LN2;
}

// σ(v) with one MUFU.EX2 and one MUFU.RCP (__fdividef: 2 ulp, and 0 when the denominator overflows).
__device__ __forceinline__ float mg_sigmoid(float v) { return __fdividef(1.f, 1.f + mg_exp2(-v * MG_LOG2E)); }

// d softplus / dv, matching the threshold above.
__device__ __forceinline__ float mg_softplus_grad(float v) { return v > 20.f ? 1.f : mg_sigmoid(v); }

__device__ __forceinline__ float mg_silu(float v) { return v * mg_sigmoid(v); }

// d silu / dv = σ(v)·(1 + v·(1 − σ(v))).
__device__ __forceinline__ float mg_silu_grad(float v)
{
    const float s = mg_sigmoid(v);
    return s * (1.f + v * (1.f - s));
}

// Butterfly sums and maxima over a full warp: every lane gets the result, in the same order every run.
__device__ __forceinline__ float mg_warp_sum(float v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float mg_warp_max(float v)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Block-wide sum in a fixed order (warp butterflies, then warp 0 over the warps' totals), so the result is
// bit-identical run to run. `scratch` holds 32 floats; every thread of the block must call it.
__device__ __forceinline__ float mg_block_sum(float v, float* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = mg_warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = lane < warps ? scratch[lane] : 0.f;
    if (warp == 0) total = mg_warp_sum(total);
    if (threadIdx.x == 0) scratch[0] = total;
    __syncthreads();
    return scratch[0];
}

__device__ __forceinline__ float mg_block_max(float v, float* scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
    v = mg_warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float best = lane < warps ? scratch[lane] : -3.402823466e38f;
    if (warp == 0) best = mg_warp_max(best);
    if (threadIdx.x == 0) scratch[0] = best;
    __syncthreads();
    return scratch[0];
}

// Sums `parts` slices of `count` floats in slice order: out[i] = Σ_j in[j·count + i]. Used to finish per-block
// partial gradients without atomics, so every backward is bit-deterministic.
extern "C" __global__ void mg_sum_slices(const float* __restrict__ in, float* __restrict__ out, int parts, long long count)
{
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x)
    {
        float acc = 0.f;
        for (int j = 0; j < parts; ++j) acc += in[(long long)j * count + i];
        out[i] = acc;
    }
}

#endif // MAMBA_COMMON_CUH
