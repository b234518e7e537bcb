using OpenTelemetry.Exporter;

namespace Saber.Server;

/// <summary>
/// The server's traces, section <c>Server:Tracing</c>: one <c>chat {model}</c> span per chat or completion request
/// (OpenTelemetry's GenAI semantic conventions, activity source <see cref="SaberServer.TelemetrySourceName"/>), exported
/// over OTLP. Off unless <see cref="Enabled"/> is true or an endpoint is configured, here or in the standard
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> environment variable.
/// </summary>
public sealed class SaberServerTracingOptions
{
    /// <summary>The configuration section: <c>"Server:Tracing"</c>.</summary>
    public const string SectionName = SaberServerOptions.SectionName + ":Tracing";

    /// <summary>The standard environment variable (and configuration key) of the OTLP exporter's endpoint, honoured as the exporter honours it.</summary>
    public const string StandardEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <summary>The protocols <see cref="OtlpProtocol"/> names, as the OTLP specification spells them.</summary>
    public static readonly IReadOnlyDictionary<string, OtlpExportProtocol> ProtocolNames = new Dictionary<string, OtlpExportProtocol>(StringComparer.OrdinalIgnoreCase)
    {
        ["grpc"] = OtlpExportProtocol.Grpc,
        ["http/protobuf"] = OtlpExportProtocol.HttpProtobuf,
    };

    /// <summary>
    /// True: trace (to <see cref="OtlpEndpoint"/>, else the exporter's default, <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> or
    /// <c>http://localhost:4317</c>). False: never, even with an endpoint. Unset (default): trace when an endpoint is configured.
    /// </summary>
    public bool? Enabled { get; set; }

    /// <summary>
    /// The collector's base address, as <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> reads it (an absolute http or https URI, e.g.
    /// <c>http://collector:4317</c> for gRPC, <c>http://collector:4318</c> for http/protobuf, where <c>v1/traces</c> is
    /// appended); it takes precedence over the environment variable. Unset: the exporter's own.
    /// </summary>
    public string? OtlpEndpoint { get; set; }

    /// <summary><c>grpc</c> or <c>http/protobuf</c>; unset: the exporter's own choice (<c>OTEL_EXPORTER_OTLP_PROTOCOL</c>, else gRPC).</summary>
    public string? OtlpProtocol { get; set; }

    /// <summary>Whether the server traces, given the standard endpoint variable's value (null when unset).</summary>
    public bool IsEnabled(string? standardEndpoint) =>
        Enabled ?? (!string.IsNullOrWhiteSpace(OtlpEndpoint) || !string.IsNullOrWhiteSpace(standardEndpoint));

    /// <summary><see cref="OtlpEndpoint"/> as a URI; null when unset.</summary>
    /// <exception cref="ArgumentException">It is not an absolute http or https URI (named, with the value).</exception>
    public Uri? Endpoint()
    {
        if (string.IsNullOrWhiteSpace(OtlpEndpoint)) return null;
        return Uri.TryCreate(OtlpEndpoint, UriKind.Absolute, out Uri? uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
            ? uri
            : throw new ArgumentException($"{SectionName}:{nameof(OtlpEndpoint)} must be an absolute http or https URI (e.g. http://localhost:4317); got '{OtlpEndpoint}'.",
                nameof(OtlpEndpoint));
    }

    /// <summary><see cref="OtlpProtocol"/>; null when unset.</summary>
    /// <exception cref="ArgumentException">It is neither <c>grpc</c> nor <c>http/protobuf</c> (named, with the value).</exception>
    public OtlpExportProtocol? Protocol()
    {
        if (string.IsNullOrWhiteSpace(OtlpProtocol)) return null;
        return ProtocolNames.TryGetValue(OtlpProtocol, out OtlpExportProtocol protocol)
            ? protocol
            : throw new ArgumentException($"{SectionName}:{nameof(OtlpProtocol)} must be one of {string.Join(", ", ProtocolNames.Keys)}; got '{OtlpProtocol}'.",
                nameof(OtlpProtocol));
    }

    /// <summary>
    /// The address the trace exporter posts to: <paramref name="endpoint"/> itself for gRPC; for http/protobuf with
    /// <c>v1/traces</c> appended, as the exporter does to <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (but not to an endpoint set in code).
    /// </summary>
    public static Uri TracesEndpoint(Uri endpoint, OtlpExportProtocol protocol) =>
        protocol == OtlpExportProtocol.HttpProtobuf
            ? new Uri(endpoint.AbsoluteUri.EndsWith('/') ? endpoint.AbsoluteUri + "v1/traces" : endpoint.AbsoluteUri + "/v1/traces")
            : endpoint;

    internal void Validate()
    {
        Endpoint();
        Protocol();
    }
}
