using MambaGen.Cuda;
using MambaGen.Generation;
using MambaGen.Tasks;
using MambaGen.Tests.Model;
using MambaGen.Training;

namespace MambaGen.Tests.Cuda;

/// <summary>
/// Buffers are made once per shape and reused: after a warm-up, training steps, forwards and decode steps of the same
/// shapes make no device allocation (no cuMemAlloc), in fp32 and in bf16 compute. Serial: the counter is process-wide.
/// </summary>
[Collection(nameof(DeviceAllocationTests))]
[CollectionDefinition(nameof(DeviceAllocationTests), DisableParallelization = true)]
public class DeviceAllocationTests
{
    private static readonly SelectiveCopyingTask CopyTask = new(sequenceLength: 40, count: 4, dataVocab: 8);

    [GpuFact]
    public void SteadyStateStepsMakeNoDeviceAllocation()
    {
        foreach (var precision in new[] { GpuPrecision.Float32, GpuPrecision.BFloat16 })
        {
            using var model = BiasedUntiedModel.Create(5).To(Device.Cuda(0, precision));
            using var trainer = new Trainer(model, CopyTask, new TrainingOptions { Steps = 6, BatchSize = 3, Seed = 2, EvaluationSequences = 3 });
            var tokens = new int[3 * CopyTask.SequenceLength];
            var logits = new float[3 * model.Shape.Vocab];
            var decoding = (IDecodingModel)model;
            var decode = decoding.CreateDecodeState(2);
            var lastLogits = new float[2 * model.Shape.Vocab];
            void Work()
            {
                trainer.TrainStep();
                model.Forward(tokens, 3, logits, LogitsFor.LastPosition);
                decoding.Advance(decode, [1, 2], lastLogits);
            }

            Work(); Work(); // warm-up: buffers, graphs and cuBLAS workspaces are made here
            long before = DeviceAllocations.Count;
            Work(); Work(); Work();
            Assert.True(DeviceAllocations.Count == before,
                $"{precision}: {DeviceAllocations.Count - before} device allocations in three steady-state rounds");
            Assert.True(before > 0, "the counter saw none of the warm-up's allocations");
        }
    }
}
