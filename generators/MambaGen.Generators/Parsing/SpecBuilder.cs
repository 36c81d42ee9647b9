using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Threading;
using MambaGen.Generators.Diagnostics;
using MambaGen.Generators.Spec;
using Microsoft.CodeAnalysis;
using HfField = MambaGen.Checkpoints.ConfigSchema.HuggingFace;

namespace MambaGen.Generators.Parsing
{
    /// <summary>A resolved model, or the reasons there is none (never both).</summary>
    internal sealed record SpecResult(ModelSpec? Spec, EquatableArray<DiagnosticInfo> Diagnostics);

    /// <summary>
    /// Every rule about declarations lives here: the generator keeps <see cref="SpecResult.Spec"/>, the analyzer
    /// reports <see cref="SpecResult.Diagnostics"/>. Resolves attribute values, the config file and defaults into
    /// a <see cref="ModelSpec"/>. Literal values combine with a config file only where they agree; the selectivity
    /// flags and <c>AInit</c> come from the literal attribute when the config has no <c>mambagen</c> object.
    /// </summary>
    internal static class SpecBuilder
    {
        /// <summary>The largest float[] .NET allocates (<c>Array.MaxLength</c>); all parameters share one.</summary>
        public const long MaxParameterCount = 0x7FFFFFC7;

        public static SpecResult Build(Declaration declaration, IConfigFileSource configFiles, CancellationToken cancellationToken) =>
            new Builder(declaration, configFiles, cancellationToken).Run();

        private sealed class Builder
        {
            private readonly Declaration _declaration;
            private readonly IConfigFileSource _configFiles;
            private readonly CancellationToken _cancellationToken;
            private readonly List<DiagnosticInfo> _diagnostics = new List<DiagnosticInfo>();

            /// <summary>The <c>ConfigFile</c> string as written, when given.</summary>
            private string? _configFile;
            private LocationInfo? _configFileLocation;
            private ModelConfig? _config;

            public Builder(Declaration declaration, IConfigFileSource configFiles, CancellationToken cancellationToken)
            {
                _declaration = declaration;
                _configFiles = configFiles;
                _cancellationToken = cancellationToken;
            }

            public SpecResult Run()
            {
                var model = _declaration.Model;
                if (model is null)
                {
                    Report(DiagnosticDescriptors.SelectiveSsmWithoutMambaModel, _declaration.Ssm?.Location ?? _declaration.NameLocation, _declaration.DisplayName);
                    return Result(null);
                }
                CheckTypeShape();
                // The compiler reports attributes it could not bind; their values may be half there, so stop.
                if (model.HasErrors || _declaration.Ssm?.HasErrors == true) return Result(null);

                bool configUsable = ReadConfig(model);
                if (_configFile is null) CheckLiteralDeclarationIsComplete(model);
                var spec = Resolve(model);
                if (_diagnostics.Count == 0 && configUsable) CheckSize(spec, model);
                return Result(_diagnostics.Count == 0 && configUsable ? spec : null);
            }

            private SpecResult Result(ModelSpec? spec) => new SpecResult(spec, new EquatableArray<DiagnosticInfo>(_diagnostics));

            private void CheckTypeShape()
            {
                var d = _declaration;
                if (!d.IsPartial) Report(DiagnosticDescriptors.ModelClassNotPartial, d.NameLocation, d.DisplayName);
                foreach (var container in d.NonPartialContainingTypes)
                    Report(DiagnosticDescriptors.ContainingTypeNotPartial, d.NameLocation, container, d.DisplayName);
                if (d.IsGeneric) Report(DiagnosticDescriptors.GenericModelClass, d.NameLocation, d.DisplayName);
                if (d.GenericContainingType is not null)
                    Report(DiagnosticDescriptors.NestedInGenericType, d.NameLocation, d.DisplayName, d.GenericContainingType);
                if (d.UnsupportedKind is not null)
                    Report(DiagnosticDescriptors.UnsupportedClassKind, d.NameLocation, d.DisplayName, d.UnsupportedKind);
                if (GeneratedMemberNames.All.Contains(d.Type.UnescapedClassName))
                    Report(DiagnosticDescriptors.ClassNameCollidesWithGeneratedMember, d.NameLocation, d.Type.UnescapedClassName);
            }

            /// <summary>Finds and reads the config file; false when one is named but cannot be used.</summary>
            private bool ReadConfig(AttributeInfo model)
            {
                var argument = model.Find("ConfigFile");
                if (argument?.Value is not string configFile) return true;
                _configFile = configFile;
                _configFileLocation = argument.Location ?? model.Location;

                var match = ConfigFileResolver.Resolve(configFile, _configFiles.AdditionalFilePaths, _configFiles.ProjectDirectory);
                if (match.Path is null)
                {
                    if (match.Candidates.Count > 1)
                        Report(DiagnosticDescriptors.ConfigFileAmbiguous, _configFileLocation, configFile, string.Join(", ", match.Candidates));
                    else
                        Report(DiagnosticDescriptors.ConfigFileNotFound, _configFileLocation, configFile);
                    return false;
                }

                _cancellationToken.ThrowIfCancellationRequested();
                var document = _configFiles.Read(match.Path, _cancellationToken);
                foreach (var problem in document.Problems)
                {
                    var arguments = new[] { configFile }.Concat(problem.Arguments);
                    _diagnostics.Add(new DiagnosticInfo(problem.Descriptor, _configFileLocation, new EquatableArray<string>(arguments)));
                }
                _config = document.Config;
                return _config is not null;
            }

            private void CheckLiteralDeclarationIsComplete(AttributeInfo model)
            {
                if (_declaration.Ssm is null)
                    Report(DiagnosticDescriptors.MissingSelectiveSsm, model.Location, _declaration.DisplayName);
                foreach (var required in new[] { "DModel", "Layers", "Vocab" })
                    if (model.Find(required) is null)
                        Report(DiagnosticDescriptors.RequiredPropertyMissing, model.Location, _declaration.DisplayName, required);
            }

            private ModelSpec Resolve(AttributeInfo model)
            {
                var ssm = _declaration.Ssm;
                var config = _config;
                int dModel = Resolve(model, "DModel", config?.DModel, 0, v => v >= 1, ">= 1");
                int layers = Resolve(model, "Layers", config?.Layers, 0, v => v >= 1, ">= 1");
                int vocab = Resolve(model, "Vocab", config?.Vocab, 0, v => v >= 1, ">= 1");
                int padMultiple = Resolve(model, "PadVocabMultiple", config?.PadVocabMultiple, 1, v => v >= 1, ">= 1");
                bool tie = Resolve(model, "TieEmbeddings", config?.TieEmbeddings, true);
                // The generated code holds ε as a float: it must stay finite and > 0 after rounding to float.
                double epsilon = Resolve(model, "NormEpsilon", config?.NormEpsilon, 1e-5, v => (float)v > 0 && !float.IsInfinity((float)v),
                    "> 0 and finite as a float (1.4E-45 .. 3.4E+38)");
                bool residualInFp32 = Resolve(model, "ResidualInFp32", config?.ResidualInFp32, true);

                int dState = Resolve(ssm, "DState", config?.DState, 16, v => v >= 1 && v <= 256, "1..256");
                int expand = Resolve(ssm, "Expand", config?.Expand, 2, v => v >= 1, ">= 1");
                int convKernel = Resolve(ssm, "ConvKernel", config?.ConvKernel, 4, v => v >= 1 && v <= 8, "1..8");
                int dtRank = ResolveDtRank(ssm, dModel);
                int dInner = config is null
                    ? (int)Math.Min(int.MaxValue, (long)expand * dModel) // beyond int range CheckSize rejects the model
                    : Resolve(null, "DInner", config.DInner, 0, v => v >= 1, ">= 1");
                bool selectiveDelta = Resolve(ssm, "SelectiveDelta", config?.SelectiveDelta, true);
                bool selectiveB = Resolve(ssm, "SelectiveB", config?.SelectiveB, true);
                bool selectiveC = Resolve(ssm, "SelectiveC", config?.SelectiveC, true);
                var aInit = Resolve(ssm, "AInit", config?.AInit, AInitKind.S4DReal,
                    v => Enum.IsDefined(typeof(AInitKind), v), "S4DReal, NegativeHalf or Random");
                bool convBias = Resolve(ssm, "ConvBias", config?.ConvBias, true);
                bool projBias = Resolve(ssm, "ProjBias", config?.ProjBias, false);
                CheckDtRankWithinInnerWidth(ssm, dtRank, dInner);
                if (config is not null && padMultiple >= 1)
                {
                    long paddedVocab = ((long)vocab + padMultiple - 1) / padMultiple * padMultiple;
                    CheckTokenId(HfField.BosTokenId, config.BosTokenId, paddedVocab);
                    CheckTokenId(HfField.EosTokenId, config.EosTokenId, paddedVocab);
                    CheckTokenId(HfField.PadTokenId, config.PadTokenId, paddedVocab);
                }

                return new ModelSpec(
                    _declaration.Type, dModel, layers, vocab, padMultiple, tie, epsilon, residualInFp32,
                    dState, expand, dInner, dtRank, convKernel, selectiveDelta, selectiveB, selectiveC, aInit,
                    convBias, projBias, _configFile, config?.BosTokenId, config?.EosTokenId, config?.PadTokenId);
            }

            /// <summary>
            /// One property: the config's value when there is a config (a literal must then agree with it), else the
            /// literal, else the attribute's default. Values out of <paramref name="inRange"/> are reported where
            /// they were written: the argument, or the ConfigFile argument for a config field.
            /// </summary>
            private T Resolve<T>(AttributeInfo? attribute, string property, ConfigValue<T>? fromConfig, T fallback,
                Func<T, bool>? inRange = null, string range = "")
            {
                _cancellationToken.ThrowIfCancellationRequested();
                var literal = attribute?.Find(property);
                // Enum arguments arrive as their underlying int.
                var literalValue = literal?.Value is int number && typeof(T) == typeof(AInitKind) ? (AInitKind)number : literal?.Value;
                bool hasLiteral = literalValue is T;
                T value = literalValue is T typed ? typed : fallback;

                bool literalInRange = !hasLiteral || inRange is null || inRange(value);
                if (!literalInRange) Report(DiagnosticDescriptors.ValueOutOfRange, literal!.Location, property, value!, range);
                if (fromConfig is null) return value;

                if (hasLiteral && literalInRange && !EqualityComparer<T>.Default.Equals(value, fromConfig.Value))
                    ReportContradiction(literal!, property, Format.Value(value), fromConfig.Key, Format.Value(fromConfig.Value), fromConfig.Note);
                if (!fromConfig.Derived && inRange is not null && !inRange(fromConfig.Value))
                    Report(DiagnosticDescriptors.ValueOutOfRange, _configFileLocation, $"'{fromConfig.Key}' in '{_configFile}'", fromConfig.Value!, range);
                return fromConfig.Value;
            }

            /// <summary>DtRank 0 means "auto", ceil(DModel / 16); a literal agrees with a config when both resolve alike.</summary>
            private int ResolveDtRank(AttributeInfo? ssm, int dModel)
            {
                var literal = ssm?.Find("DtRank");
                int written = literal?.Value is int number ? number : 0;
                int auto = (int)(((long)dModel + 15) / 16);
                int literalRank = written == 0 ? auto : written;
                if (written < 0)
                    Report(DiagnosticDescriptors.ValueOutOfRange, literal!.Location, "DtRank", written, ">= 0 (0 = auto: ceil(DModel / 16))");

                var fromConfig = _config?.DtRank;
                if (fromConfig is null) return literalRank;
                if (literal is not null && written >= 0 && literalRank != fromConfig.Value)
                {
                    var shown = written == 0 ? $"0 (auto: {auto})" : Format.Value(written);
                    ReportContradiction(literal, "DtRank", shown, fromConfig.Key, Format.Value(fromConfig.Value), fromConfig.Note);
                }
                if (!fromConfig.Derived && fromConfig.Value < 1)
                    Report(DiagnosticDescriptors.ValueOutOfRange, _configFileLocation, $"'{fromConfig.Key}' in '{_configFile}'", fromConfig.Value, ">= 1");
                return fromConfig.Value;
            }

            /// <summary>
            /// Δ's low-rank path maps the ED inner channels to R values and back (x_proj, then dt_proj); a rank above
            /// ED adds parameters but no expressiveness, and always signals a typo, so R is bounded by ED.
            /// </summary>
            private void CheckDtRankWithinInnerWidth(AttributeInfo? ssm, int dtRank, int dInner)
            {
                if (dtRank <= dInner || dtRank < 1 || dInner < 1) return;
                var literal = ssm?.Find("DtRank");
                bool fromLiteral = _config?.DtRank is null;
                string property = fromLiteral ? "DtRank" : $"'{_config!.DtRank!.Key}' in '{_configFile}'";
                Report(DiagnosticDescriptors.ValueOutOfRange, fromLiteral ? literal?.Location ?? ssm?.Location : _configFileLocation,
                    property, dtRank, $"1..{dInner} (at most the inner width ED = {dInner})");
            }

            /// <summary>A special token id of the config must name a row of the embedding, or generation could never emit it.</summary>
            private void CheckTokenId(string key, int? id, long paddedVocab)
            {
                if (id is int value && (value < 0 || value >= paddedVocab))
                    Report(DiagnosticDescriptors.ValueOutOfRange, _configFileLocation, $"'{key}' in '{_configFile}'", value,
                        $"0..{paddedVocab - 1} (a token id inside the vocabulary)");
            }

            /// <summary>
            /// The runtime keeps the parameters in arrays that no tensor crosses (its ParameterLayout segments), so every
            /// tensor must fit one float[]; the whole model may exceed one. Counted in double: exact far beyond the limit.
            /// </summary>
            private void CheckSize(ModelSpec spec, AttributeInfo model)
            {
                double d = spec.DModel, ed = spec.DInner, n = spec.DState, r = spec.DtRank, k = spec.ConvKernel;
                double paddedVocab = Math.Ceiling((double)spec.VocabUnpadded / spec.PadVocabMultiple) * spec.PadVocabMultiple;
                double xProjRows = (spec.SelectiveDelta ? r : 0) + (spec.SelectiveB ? n : 0) + (spec.SelectiveC ? n : 0);
                var tensors = new (string Name, double Length)[]
                {
                    ("the embedding", paddedVocab * d), ("in_proj", 2 * ed * d), ("conv1d", ed * k), ("x_proj", xProjRows * ed),
                    ("dt_proj", ed * r), ("A_log", ed * n), ("out_proj", d * ed),
                };
                var largest = tensors.OrderByDescending(t => t.Length).First();
                if (largest.Length > MaxParameterCount)
                    Report(DiagnosticDescriptors.ModelTooLarge, model.Location, _declaration.DisplayName, largest.Name,
                        largest.Length.ToString("#,0", CultureInfo.InvariantCulture), MaxParameterCount.ToString("#,0", CultureInfo.InvariantCulture));
            }

            private void ReportContradiction(AttributeArgument literal, string property, string literalText, string key, string configText, string note) =>
                Report(DiagnosticDescriptors.LiteralContradictsConfig, literal.Location, property, literalText, _configFile!, key, configText, note);

            private void Report(DiagnosticDescriptor descriptor, LocationInfo? location, params object[] arguments) =>
                _diagnostics.Add(DiagnosticInfo.Create(descriptor, location, arguments));
        }
    }
}
