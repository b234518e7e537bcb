using System.Text.Json;

namespace Saber.Cli;

/// <summary>The machine-readable result of <c>saber replay --json</c>.</summary>
internal static class TraceJson
{
    public static string Write(SequenceResult result)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("tokens");
            foreach (int token in result.Tokens) json.WriteNumberValue(token);
            json.WriteEndArray();
            json.WriteNumber("nfe", result.Nfe);
            GenerateCommand.WriteRemaskStatistics(json, result.RemaskStatistics);
            json.WriteStartArray("trace");
            foreach (StepTrace step in result.Trace)
            {
                json.WriteStartObject();
                json.WriteNumber("step", step.Step);
                json.WritePropertyName("tau");
                if (step.Tau is double tau) Number(json, tau);
                else json.WriteNullValue();
                json.WriteStartArray("committed");
                foreach (CommittedToken c in step.Committed)
                {
                    json.WriteStartArray();
                    json.WriteNumberValue(c.Position);
                    json.WriteNumberValue(c.Token);
                    Number(json, c.Confidence);
                    json.WriteEndArray();
                }
                json.WriteEndArray();
                json.WriteStartArray("remasked");
                foreach (RemaskedToken r in step.Remasked)
                {
                    json.WriteStartArray();
                    json.WriteNumberValue(r.Position);
                    Number(json, r.Delta);
                    json.WriteEndArray();
                }
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>JSON has no non-finite numbers: they are written as the strings "Infinity", "-Infinity", "NaN".</summary>
    private static void Number(Utf8JsonWriter json, double value)
    {
        if (double.IsFinite(value)) json.WriteNumberValue(value);
        else json.WriteStringValue(double.IsNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity");
    }

    private static void Number(Utf8JsonWriter json, float value)
    {
        if (float.IsFinite(value)) json.WriteNumberValue(value);
        else Number(json, (double)value);
    }
}
