using System.Collections.Generic;

namespace MambaGen.Generators.Spec
{
    /// <summary>
    /// The names the emitters declare directly inside a model class: constants, properties, methods, fields and
    /// nested types. C# forbids a member named like its enclosing type (CS0542), so a model class may not bear one
    /// of these names; <c>SpecBuilder</c> reports MAMBA0019 instead of generating code that cannot compile.
    /// A test in the generator tests compares this list with what the emitters actually declare, so an emitter
    /// that adds a member and forgets this list fails there.
    /// </summary>
    internal static class GeneratedMemberNames
    {
        public static readonly IReadOnlyCollection<string> All = new HashSet<string>
        {
            // Baked constants.
            "DModel", "Layers", "Vocab", "DState", "Expand", "DInner", "DInnerStride", "DtRank", "ConvKernel",
            "XProjRows", "XProjB", "XProjC", "SelectiveDelta", "SelectiveB", "SelectiveC", "AInit", "ConvBias",
            "ProjBias", "TieEmbeddings", "ResidualInFp32", "NormEpsilon", "BosTokenId", "EosTokenId", "PadTokenId",
            "HeadOffset", "ScanChunk", "ChannelBlock", "ChannelBlocks", "ChunkStatesPerBlock", "ChunkStepsPerBlock",
            // Public API.
            "ModelShape", "Layout", "Shape", "Parameters", "FromParameters", "Create", "Load", "Save", "Forward",
            "DecodeState", "CreateDecodeState", "Advance", "Generate", "ForwardBackward", "Device", "DeviceTraining", "To", "Dispose",
            "CudaSource", "LogitRows", "ConvolveBlocksPerTask", "ConvolveTasks", "GenerateBatch", "GenerateStreamingAsync", "EndOfSequenceId", "VocabularySize",
            "UseHalfPrecisionWeights", "DecodeWeightPrecision",
            // Implementation: nested types, fields and helpers.
            "Activations", "Backward", "BackwardBuffers", "LayerConstants", "LayerGradients", "Workspace",
            "InferenceWorkspaceFor", "TrainingWorkspaceFor", "RunLayers", "HeadForAllRows", "HeadForLastRows",
            "ChunksOf", "SumBlockShares", "ScanTask", "ScanBackwardTask", "ConvolveTask", "ConvolveBackwardTask",
            "Kernels", "CpuBackend", "CpuForward", "CpuForwardBackward", "CreateCpuBackend", "CreateCudaBackend", "_backend",
            "_active", "_constants", "_convolveBackwardTask", "_convolveTask", "_inference", "_scanBackwardTask",
            "_scanTask", "_sync", "_training",
            "ProductWeights", "Project", "StepConstants", "_halfWeights", "_stepConstants", "_stepConstantsVersion",
        };
    }
}
