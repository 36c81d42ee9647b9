namespace MambaGen.Tests.Reference;

// Each type takes every constant from the fixture's config.json (an AdditionalFiles item of this project):
// the declarations carry no numbers, exactly as a user loading a real Hugging Face checkpoint would write them.

[MambaModel(ConfigFile = "fixtures/hf-tiny-a/config.json")]
public partial class HfTinyA { }

[MambaModel(ConfigFile = "fixtures/hf-tiny-b/config.json")]
public partial class HfTinyB { }

[MambaModel(ConfigFile = "fixtures/hf-tiny-bf16/config.json")]
public partial class HfTinyBf16 { }
