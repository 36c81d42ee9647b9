namespace MambaGen.Checkpoints;

// Stand-in so the emitter branch compiles until the checkpoint IO lands; deleted on merge.
public static class MambaCheckpoint
{
    public static MambaParameters Load(string directory, MambaShape shape) => throw new NotImplementedException();

    public static void Save(string directory, MambaParameters parameters) => throw new NotImplementedException();
}
