using System.ClientModel;
using System.ClientModel.Primitives;
using OpenAI;
using OpenAI.Chat;
using Saber.Tests.Shared;

namespace Saber.Server.Tests;

/// <summary>
/// The official OpenAI .NET client (package OpenAI) against the server on a real loopback port, as users call it:
/// chat, streaming, and errors surfacing as <see cref="ClientResultException"/> with the server's status.
/// </summary>
public class OpenAIClientTests
{
    private LoopbackSaberServer server = null!;
    private ChatClient chat = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        server = await LoopbackSaberServer.StartAsync();
        var options = new OpenAIClientOptions
        {
            Endpoint = new Uri(server.Address, "/v1/"),
            // One attempt: a retried 429/503 would hide the status under test.
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
            NetworkTimeout = TimeSpan.FromSeconds(60),
        };
        chat = new ChatClient("tiny", new ApiKeyCredential("unused-on-loopback"), options);
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        if (server is not null) await server.DisposeAsync();
    }

    private static ChatCompletionOptions Greedy(int maxTokens) => new() { MaxOutputTokenCount = maxTokens, Temperature = 0 };

    [Test]
    public async Task AChatCompletionIsParsedByTheOfficialClient()
    {
        ClientResult<ChatCompletion> result = await chat.CompleteChatAsync([new UserChatMessage("def add(a, b):")], Greedy(16));
        ChatCompletion completion = result.Value;
        Assert.That(result.GetRawResponse().Status, Is.EqualTo(200));
        Assert.That(completion.Model, Is.EqualTo("tiny"));
        Assert.That(completion.Role, Is.EqualTo(ChatMessageRole.Assistant));
        Assert.That(completion.Id, Does.StartWith("chatcmpl-"));
        Assert.That(completion.FinishReason, Is.AnyOf(ChatFinishReason.Stop, ChatFinishReason.Length));
        Assert.That(completion.Content, Has.Count.EqualTo(1));
        Assert.That(completion.Usage.InputTokenCount, Is.GreaterThan(0));
        Assert.That(completion.Usage.OutputTokenCount, Is.InRange(1, 16));
        Assert.That(completion.Usage.TotalTokenCount, Is.EqualTo(completion.Usage.InputTokenCount + completion.Usage.OutputTokenCount));
    }

    [Test]
    public async Task AStreamedChatArrivesAsTheSameTextAsTheWholeAnswer()
    {
        ChatCompletion whole = (await chat.CompleteChatAsync([new UserChatMessage("import os\n")], Greedy(32))).Value;

        var text = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (StreamingChatCompletionUpdate update in chat.CompleteChatStreamingAsync([new UserChatMessage("import os\n")], Greedy(32)))
        {
            updates++;
            Assert.That(update.Model, Is.EqualTo("tiny"));
            foreach (ChatMessageContentPart part in update.ContentUpdate) text.Append(part.Text);
            finish = update.FinishReason ?? finish;
        }
        Assert.That(updates, Is.GreaterThan(0));
        Assert.That(text.ToString(), Is.EqualTo(whole.Content[0].Text), "greedy decodes are deterministic: the stream spells the same answer");
        Assert.That(finish, Is.EqualTo(whole.FinishReason));
    }

    [Test]
    public void AnUnknownModelIsAClientResultExceptionWith404()
    {
        ChatClient other = new("no-such-model", new ApiKeyCredential("unused"), new OpenAIClientOptions
        {
            Endpoint = new Uri(server.Address, "/v1/"),
            RetryPolicy = new ClientRetryPolicy(maxRetries: 0),
        });
        ClientResultException e = Assert.ThrowsAsync<ClientResultException>(() => other.CompleteChatAsync([new UserChatMessage("hi")], Greedy(4)))!;
        Assert.That(e.Status, Is.EqualTo(404));
        Assert.That(e.Message, Does.Contain("no-such-model").And.Contain("model_not_found"));
    }

    [Test]
    public void AnInvalidParameterIsAClientResultExceptionWith400NamingIt()
    {
        ClientResultException e = Assert.ThrowsAsync<ClientResultException>(() =>
            chat.CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 100_000 }))!;
        Assert.That(e.Status, Is.EqualTo(400));
        Assert.That(e.Message, Does.Contain("max_tokens"));
    }

    [Test]
    public void AStreamedRequestRefusedBeforeItsFirstEventIsAClientResultException()
    {
        ClientResultException e = Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (StreamingChatCompletionUpdate _ in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")],
                new ChatCompletionOptions { MaxOutputTokenCount = 100_000 }))
            {
            }
        })!;
        Assert.That(e.Status, Is.EqualTo(400));
    }
}
