using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Saber.Server.Tests.Hostile;

/// <summary>
/// One TCP connection to the loopback server, written byte by byte as a hostile client would: headers that promise a
/// body, a body trickled or cut short, a half-close. Reads the answer as raw HTTP/1.1.
/// </summary>
internal sealed class RawHttpConnection : IAsyncDisposable
{
    private readonly TcpClient client;
    private readonly NetworkStream stream;

    private RawHttpConnection(TcpClient client)
    {
        this.client = client;
        stream = client.GetStream();
    }

    public static async Task<RawHttpConnection> OpenAsync(Uri address)
    {
        var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(address.Host, address.Port);
        return new RawHttpConnection(client);
    }

    /// <summary>The request line and headers of a JSON POST promising <paramref name="contentLength"/> body bytes.</summary>
    public static string PostHeaders(Uri address, string path, int contentLength, string contentType = "application/json") =>
        $"POST {path} HTTP/1.1\r\nHost: {address.Authority}\r\nContent-Type: {contentType}\r\nContent-Length: {contentLength}\r\n\r\n";

    public async Task SendAsync(string text) => await SendAsync(Encoding.UTF8.GetBytes(text));

    public async Task SendAsync(byte[] bytes)
    {
        await stream.WriteAsync(bytes);
        await stream.FlushAsync();
    }

    /// <summary>Sends <paramref name="body"/> one byte every <paramref name="interval"/> until it is all sent, the server closes, or <paramref name="stop"/>.</summary>
    public async Task TrickleAsync(byte[] body, TimeSpan interval, CancellationToken stop)
    {
        try
        {
            foreach (byte b in body)
            {
                await Task.Delay(interval, stop);
                await stream.WriteAsync(new[] { b }, stop);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // Stopped, or the server answered and closed the connection.
        }
    }

    /// <summary>Stops sending (a FIN), keeping the connection open to read the answer.</summary>
    public void HalfClose() => client.Client.Shutdown(SocketShutdown.Send);

    /// <summary>Everything the server sends until it closes the connection, or <paramref name="timeout"/>; "" when it closes without a byte.</summary>
    public async Task<RawHttpResponse> ReadResponseAsync(TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        var received = new MemoryStream();
        byte[] buffer = new byte[4096];
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, deadline.Token)) > 0)
            {
                received.Write(buffer, 0, read);
                if (RawHttpResponse.IsComplete(received.ToArray())) break;
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"No complete answer within {timeout}; received: {Encoding.UTF8.GetString(received.ToArray())}");
        }
        catch (IOException)
        {
            // A reset after (or instead of) the answer: what arrived is the answer.
        }
        return new RawHttpResponse(Encoding.UTF8.GetString(received.ToArray()));
    }

    public ValueTask DisposeAsync()
    {
        client.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>A raw HTTP/1.1 answer: its status line, headers and (de-chunked) body.</summary>
internal sealed class RawHttpResponse
{
    public RawHttpResponse(string text)
    {
        Text = text;
        int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        string head = end < 0 ? text : text[..end];
        string[] lines = head.Split("\r\n");
        StatusLine = lines[0];
        Status = StatusLine.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) && int.TryParse(StatusLine.AsSpan(9, 3), out int status) ? status : 0;
        foreach (string line in lines.Skip(1))
        {
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0) Headers[line[..colon].Trim()] = line[(colon + 1)..].Trim();
        }
        string rest = end < 0 ? "" : text[(end + 4)..];
        Body = Headers.TryGetValue("Transfer-Encoding", out string? encoding) && encoding.Contains("chunked", StringComparison.OrdinalIgnoreCase) ? Dechunk(rest) : rest;
    }

    public string Text { get; }
    public string StatusLine { get; }
    public int Status { get; }
    public Dictionary<string, string> Headers { get; } = new(StringComparer.OrdinalIgnoreCase);
    public string Body { get; }

    /// <summary>The OpenAI error object of the body.</summary>
    public JsonElement Error => JsonDocument.Parse(Body).RootElement.GetProperty("error");

    /// <summary>Whether <paramref name="bytes"/> hold a whole answer: headers and the body its Content-Length or last chunk ends.</summary>
    public static bool IsComplete(byte[] bytes)
    {
        string text = Encoding.UTF8.GetString(bytes);
        int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0) return false;
        var response = new RawHttpResponse(text);
        if (response.Headers.TryGetValue("Content-Length", out string? length))
            return Encoding.UTF8.GetByteCount(text[(end + 4)..]) >= int.Parse(length);
        return text.EndsWith("\r\n0\r\n\r\n", StringComparison.Ordinal);
    }

    private static string Dechunk(string chunked)
    {
        // Chunk sizes count bytes, not characters.
        byte[] bytes = Encoding.UTF8.GetBytes(chunked);
        var body = new MemoryStream();
        int at = 0;
        while (at < bytes.Length)
        {
            int line = bytes.AsSpan(at).IndexOf("\r\n"u8);
            if (line < 0) break;
            int size = Convert.ToInt32(Encoding.ASCII.GetString(bytes, at, line).Split(';')[0].Trim(), 16);
            if (size == 0) break;
            body.Write(bytes, at + line + 2, size);
            at += line + 2 + size + 2;
        }
        return Encoding.UTF8.GetString(body.ToArray());
    }

    public override string ToString() => Text;
}
