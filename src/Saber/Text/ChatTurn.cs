namespace Saber.Text;

/// <summary>One message of a conversation as a chat template sees it: <c>message['role']</c> and <c>message['content']</c>.</summary>
public sealed record ChatTurn(string Role, string Content);
