using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Template;
using Microsoft.Net.Http.Headers;

namespace Saber.Server;

/// <summary>
/// The fallback's answer to a request no endpoint takes: 405 <c>method_not_allowed</c> with <c>Allow</c> when the path
/// is mapped for other methods (routing alone sends those to the fallback too), else 404 <c>not_found</c>.
/// </summary>
internal static class AllowedMethods
{
    public static OpenAIErrorException NoEndpoint(HttpContext context, IEndpointRouteBuilder routes)
    {
        var allowed = new SortedSet<string>(StringComparer.Ordinal);
        foreach (RouteEndpoint endpoint in routes.DataSources.SelectMany(d => d.Endpoints).OfType<RouteEndpoint>())
        {
            if (endpoint.Metadata.GetMetadata<IHttpMethodMetadata>() is not { } methods || endpoint.RoutePattern.RawText is not string pattern)
                continue;
            if (new TemplateMatcher(TemplateParser.Parse(pattern), []).TryMatch(context.Request.Path, []))
                allowed.UnionWith(methods.HttpMethods);
        }
        string request = $"{context.Request.Method} {context.Request.Path}";
        if (allowed.Count == 0)
            return new OpenAIErrorException(StatusCodes.Status404NotFound, $"No endpoint {request}.", code: "not_found");
        string allow = string.Join(", ", allowed);
        return new OpenAIErrorException(StatusCodes.Status405MethodNotAllowed, $"No endpoint {request}; {context.Request.Path} takes {allow}.", code: "method_not_allowed")
        {
            Headers = [new(HeaderNames.Allow, allow)],
        };
    }
}
