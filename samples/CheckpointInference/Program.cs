using MambaGen;
Console.WriteLine(Demo.DModel);

[MambaModel(DModel = 64, Layers = 2, Vocab = 100)]
[SelectiveSsm(DState = 8)]
partial class Demo { }
