"""Constant sets each template is compiled with (defaults first)."""

BF16 = {"MAMBA_INPUT_BF16": 1}


def compile_sets(name):
    if name == "selective_scan.cu":
        sets = [{}]
        for n in (1, 2, 4, 8, 16, 32, 64, 256):
            sets.append({"MAMBA_D_STATE": n, "MAMBA_D_INNER": 50})
        for sd in (0, 1):
            for sb in (0, 1):
                for sc in (0, 1):
                    sets.append({"MAMBA_SELECTIVE_DELTA": sd, "MAMBA_SELECTIVE_B": sb, "MAMBA_SELECTIVE_C": sc})
        sets.append({"MAMBA_HAS_Z": 0})
        return sets + [dict(s, **BF16) for s in sets[:3]]
    if name == "causal_conv1d.cu":
        return [{}, {"MAMBA_CONV_K": 2, "MAMBA_HAS_CONV_BIAS": 0}, {"MAMBA_CONV_K": 5}, {"MAMBA_CONV_K": 8},
                dict({"MAMBA_CONV_K": 1}, **BF16), BF16]
    if name == "rms_norm.cu":
        return [{}, {"MAMBA_D_MODEL": 64}, {"MAMBA_D_MODEL": 2560}, BF16]
    if name == "decode_step.cu":
        return [{}, {"MAMBA_SELECTIVE_DELTA": 0, "MAMBA_SELECTIVE_B": 0, "MAMBA_SELECTIVE_C": 0, "MAMBA_HAS_Z": 0},
                {"MAMBA_D_STATE": 1, "MAMBA_CONV_K": 2, "MAMBA_HAS_CONV_BIAS": 0}, BF16,
                {"MAMBA_DECODE_F16": 1}, dict(BF16, MAMBA_DECODE_F16=1)]
    if name == "cross_entropy.cu":
        return [{}, {"MAMBA_VOCAB": 64}, {"MAMBA_VOCAB": 298}, BF16]
    if name == "embedding.cu":
        return [{}, {"MAMBA_D_MODEL": 64}, BF16]
    return [{}, BF16]
