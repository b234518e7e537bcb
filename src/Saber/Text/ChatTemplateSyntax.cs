using System.Globalization;
using System.Text;

namespace Saber.Text;

// The Jinja subset's tokens and syntax tree, and the lexer and parser that build them. Every construct outside the
// subset is rejected here, at parse time, with its position; ChatTemplate evaluates the tree.

internal enum TokenKind { Text, OutputStart, StatementStart, TagEnd, Name, String, Integer, Symbol }

internal readonly record struct Token(TokenKind Kind, string Value, int Position);

internal abstract record Node(int Position);
internal sealed record TextNode(string Text, int Position) : Node(Position);
internal sealed record OutputNode(Expr Value, int Position) : Node(Position);
internal sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node> Else, int Position) : Node(Position);
internal sealed record ForNode(string Variable, Expr Items, List<Node> Body, int Position) : Node(Position);
internal sealed record SetNode(string Name, Expr Value, int Position) : Node(Position);

internal abstract record Expr(int Position);
internal sealed record LiteralExpr(object? Value, int Position) : Expr(Position);
internal sealed record ListExpr(List<Expr> Items, int Position) : Expr(Position);
internal sealed record VariableExpr(string Name, int Position) : Expr(Position);
internal sealed record ItemExpr(Expr Target, Expr Key, int Position) : Expr(Position);
internal sealed record AttributeExpr(Expr Target, string Name, int Position) : Expr(Position);
internal sealed record UnaryExpr(string Operator, Expr Operand, int Position) : Expr(Position);
internal sealed record BinaryExpr(string Operator, Expr Left, Expr Right, int Position) : Expr(Position);
internal sealed record FilterExpr(Expr Target, string Filter, int Position) : Expr(Position);
internal sealed record TestExpr(Expr Target, string Test, bool Negated, int Position) : Expr(Position);
internal sealed record RaiseExpr(Expr Message, int Position) : Expr(Position);

/// <summary>Splits a template into text and tag tokens, applying whitespace control the way Hugging Face renders chat templates (Jinja with trim_blocks and lstrip_blocks).</summary>
internal sealed class ChatTemplateLexer(string source)
{
    private enum TagKind { Output, Statement, Comment }

    private sealed record Piece(string? Text, TagKind Kind, bool StripBefore, bool StripAfter, List<Token> Tokens, int Position);

    public List<Token> Tokenize()
    {
        var pieces = new List<Piece>();
        int position = 0;
        while (position < source.Length)
        {
            int open = FindTagOpen(position);
            if (open < 0) { pieces.Add(TextPiece(source[position..], position)); break; }
            if (open > position) pieces.Add(TextPiece(source[position..open], position));
            position = ReadTag(open, pieces);
        }
        ApplyWhitespaceControl(pieces);
        var tokens = new List<Token>();
        foreach (Piece piece in pieces)
        {
            if (piece.Text is not null) { if (piece.Text.Length > 0) tokens.Add(new Token(TokenKind.Text, piece.Text, piece.Position)); }
            else if (piece.Kind != TagKind.Comment) tokens.AddRange(piece.Tokens);
        }
        return tokens;
    }

    private static Piece TextPiece(string text, int position) => new(text, TagKind.Output, false, false, [], position);

    private int FindTagOpen(int from)
    {
        for (int i = from; i + 1 < source.Length; i++)
            if (source[i] == '{' && source[i + 1] is '{' or '%' or '#') return i;
        return -1;
    }

    private int ReadTag(int open, List<Piece> pieces)
    {
        char marker = source[open + 1];
        int position = open + 2;
        bool stripBefore = position < source.Length && source[position] == '-';
        if (stripBefore) position++;
        if (marker == '#')
        {
            int close = source.IndexOf("#}", position, StringComparison.Ordinal);
            if (close < 0) throw Error("unclosed comment '{#'", open);
            pieces.Add(new Piece(null, TagKind.Comment, stripBefore, close > position && source[close - 1] == '-', [], open));
            return close + 2;
        }
        var kind = marker == '{' ? TagKind.Output : TagKind.Statement;
        string closing = kind == TagKind.Output ? "}}" : "%}";
        var tokens = new List<Token> { new(kind == TagKind.Output ? TokenKind.OutputStart : TokenKind.StatementStart, "", open) };
        while (true)
        {
            while (position < source.Length && char.IsWhiteSpace(source[position])) position++;
            if (position >= source.Length) throw Error($"unclosed tag (no '{closing}')", open);
            bool stripAfter = source[position] == '-' && string.CompareOrdinal(source, position + 1, closing, 0, 2) == 0;
            if (stripAfter || string.CompareOrdinal(source, position, closing, 0, 2) == 0)
            {
                tokens.Add(new Token(TokenKind.TagEnd, closing, position));
                pieces.Add(new Piece(null, kind, stripBefore, stripAfter, tokens, open));
                return position + (stripAfter ? 3 : 2);
            }
            tokens.Add(ReadToken(ref position));
        }
    }

    private static readonly string[] TwoCharacterSymbols = ["==", "!=", "<=", ">=", "//", "**"];

    private Token ReadToken(ref int position)
    {
        int start = position;
        char c = source[position];
        if (c is '\'' or '"')
        {
            var text = new StringBuilder();
            position++;
            while (true)
            {
                if (position >= source.Length) throw Error("unterminated string literal", start);
                char d = source[position++];
                if (d == c) break;
                if (d != '\\') { text.Append(d); continue; }
                if (position >= source.Length) throw Error("unterminated string literal", start);
                char escaped = source[position++];
                text.Append(escaped switch
                {
                    'n' => '\n', 't' => '\t', 'r' => '\r', '\\' => '\\', '\'' => '\'', '"' => '"',
                    _ => throw Error($"unsupported string escape '\\{escaped}'", position - 2),
                });
            }
            return new Token(TokenKind.String, text.ToString(), start);
        }
        if (char.IsAsciiDigit(c))
        {
            while (position < source.Length && char.IsAsciiDigit(source[position])) position++;
            if (position < source.Length && source[position] == '.' && position + 1 < source.Length && char.IsAsciiDigit(source[position + 1]))
                throw Error("unsupported float literal", start);
            return new Token(TokenKind.Integer, source[start..position], start);
        }
        if (char.IsAsciiLetter(c) || c == '_')
        {
            while (position < source.Length && (char.IsAsciiLetterOrDigit(source[position]) || source[position] == '_')) position++;
            return new Token(TokenKind.Name, source[start..position], start);
        }
        foreach (string symbol in TwoCharacterSymbols)
            if (string.CompareOrdinal(source, position, symbol, 0, 2) == 0)
            {
                position += 2;
                return new Token(TokenKind.Symbol, symbol, start);
            }
        if ("+-*/%~<>()[]{}.,:|=".Contains(c))
        {
            position++;
            return new Token(TokenKind.Symbol, c.ToString(), start);
        }
        throw Error($"unexpected character '{c}'", start);
    }

    // '-' strips all whitespace on its side; otherwise a statement or comment tag drops the first newline after it
    // (trim_blocks) and the spaces and tabs before it on its line (lstrip_blocks), as transformers' chat templates do.
    private static void ApplyWhitespaceControl(List<Piece> pieces)
    {
        for (int i = 0; i < pieces.Count; i++)
        {
            Piece piece = pieces[i];
            if (piece.Text is null) continue;
            string text = piece.Text;
            Piece? before = i > 0 ? pieces[i - 1] : null;
            Piece? after = i + 1 < pieces.Count ? pieces[i + 1] : null;
            if (before is { Text: null })
            {
                if (before.StripAfter) text = text.TrimStart();
                else if (before.Kind != TagKind.Output)
                    text = text.StartsWith("\r\n", StringComparison.Ordinal) ? text[2..] : text.StartsWith('\n') ? text[1..] : text;
            }
            if (after is { Text: null })
            {
                if (after.StripBefore) text = text.TrimEnd();
                else if (after.Kind != TagKind.Output)
                {
                    int lineStart = text.LastIndexOf('\n') + 1;
                    bool blankToTag = text.AsSpan(lineStart).IndexOfAnyExcept(' ', '\t') < 0;
                    // Only at the start of a line: after a newline in this text, or at the very start of the template.
                    if (blankToTag && (lineStart > 0 || before is null)) text = text[..lineStart];
                }
            }
            pieces[i] = piece with { Text = text };
        }
    }

    internal ChatTemplateException Error(string message, int position) => ChatTemplateParser.Error(source, message, position);
}

/// <summary>Builds the syntax tree from the tokens; anything outside the subset is a <see cref="ChatTemplateException"/> naming it.</summary>
internal sealed class ChatTemplateParser
{
    private static readonly HashSet<string> SupportedFilters = ["trim", "length", "upper", "lower"];
    private static readonly HashSet<string> SupportedTests = ["defined", "undefined", "none"];

    private readonly string source;
    private readonly List<Token> tokens;
    private int next;

    public ChatTemplateParser(string source)
    {
        this.source = source;
        tokens = new ChatTemplateLexer(source).Tokenize();
    }

    public List<Node> Parse()
    {
        List<Node> body = ParseBody(out Token? end, []);
        if (end is { } stray) throw Error($"'{{% {stray.Value} %}}' without a matching opening tag", stray.Position);
        return body;
    }

    // Parses nodes until one of the statement keywords in 'ends' (returned in 'end', its tag not consumed beyond the keyword) or the end of the template.
    private List<Node> ParseBody(out Token? end, HashSet<string> ends)
    {
        var nodes = new List<Node>();
        while (next < tokens.Count)
        {
            Token token = tokens[next++];
            switch (token.Kind)
            {
                case TokenKind.Text:
                    nodes.Add(new TextNode(token.Value, token.Position));
                    break;
                case TokenKind.OutputStart:
                    Expr value = ParseExpression();
                    Expect(TokenKind.TagEnd, "'}}'");
                    nodes.Add(new OutputNode(value, token.Position));
                    break;
                case TokenKind.StatementStart:
                    Token keyword = Expect(TokenKind.Name, "a statement name");
                    if (ends.Contains(keyword.Value)) { end = keyword; return nodes; }
                    nodes.Add(ParseStatement(keyword));
                    break;
                default:
                    throw Error($"unexpected '{token.Value}'", token.Position);
            }
        }
        end = null;
        return nodes;
    }

    private Node ParseStatement(Token keyword)
    {
        switch (keyword.Value)
        {
            case "if":
            {
                var branches = new List<(Expr, List<Node>)>();
                Expr condition = ParseExpression();
                Expect(TokenKind.TagEnd, "'%}'");
                while (true)
                {
                    List<Node> body = ParseBody(out Token? end, ["elif", "else", "endif"]);
                    branches.Add((condition, body));
                    if (end is null) throw Error("'{% if %}' without '{% endif %}'", keyword.Position);
                    if (end.Value.Value == "elif") { condition = ParseExpression(); Expect(TokenKind.TagEnd, "'%}'"); continue; }
                    Expect(TokenKind.TagEnd, "'%}'");
                    if (end.Value.Value == "endif") return new IfNode(branches, [], keyword.Position);
                    List<Node> otherwise = ParseBody(out Token? endIf, ["endif", "elif", "else"]);
                    if (endIf is null || endIf.Value.Value != "endif") throw Error("'{% else %}' without '{% endif %}'", end.Value.Position);
                    Expect(TokenKind.TagEnd, "'%}'");
                    return new IfNode(branches, otherwise, keyword.Position);
                }
            }
            case "for":
            {
                Token variable = Expect(TokenKind.Name, "a loop variable");
                if (Peek(TokenKind.Symbol, ",")) throw Error("unsupported for loop over several variables", tokens[next].Position);
                Token inKeyword = Expect(TokenKind.Name, "'in'");
                if (inKeyword.Value != "in") throw Error("expected 'in'", inKeyword.Position);
                Expr items = ParseExpression();
                if (Peek(TokenKind.Name, "if")) throw Error("unsupported loop filter 'for ... if'", tokens[next].Position);
                if (Peek(TokenKind.Name, "recursive")) throw Error("unsupported recursive loop", tokens[next].Position);
                Expect(TokenKind.TagEnd, "'%}'");
                List<Node> body = ParseBody(out Token? end, ["endfor", "else"]);
                if (end is null) throw Error("'{% for %}' without '{% endfor %}'", keyword.Position);
                if (end.Value.Value == "else") throw Error("unsupported statement 'for ... else'", end.Value.Position);
                Expect(TokenKind.TagEnd, "'%}'");
                return new ForNode(variable.Value, items, body, keyword.Position);
            }
            case "set":
            {
                Token name = Expect(TokenKind.Name, "a variable name");
                if (Peek(TokenKind.Symbol, ".")) throw Error("unsupported attribute assignment 'set a.b'", tokens[next].Position);
                if (Peek(TokenKind.Symbol, ",")) throw Error("unsupported multiple assignment 'set a, b'", tokens[next].Position);
                if (!Peek(TokenKind.Symbol, "=")) throw Error("unsupported block assignment '{% set x %}...{% endset %}'", keyword.Position);
                next++;
                Expr value = ParseExpression();
                Expect(TokenKind.TagEnd, "'%}'");
                return new SetNode(name.Value, value, keyword.Position);
            }
            default:
                throw Error($"unsupported statement '{keyword.Value}'", keyword.Position);
        }
    }

    // Precedence, loosest first, as in Jinja: or, and, not, comparisons and 'in', + -, ~, * / (unsupported), unary -, then postfix ([...], .name) and filters/tests.
    private Expr ParseExpression()
    {
        Expr expr = ParseOr();
        if (Peek(TokenKind.Name, "if")) throw Error("unsupported conditional expression 'x if c else y'", tokens[next].Position);
        return expr;
    }

    private Expr ParseOr()
    {
        Expr left = ParseAnd();
        while (Peek(TokenKind.Name, "or")) { int at = tokens[next++].Position; left = new BinaryExpr("or", left, ParseAnd(), at); }
        return left;
    }

    private Expr ParseAnd()
    {
        Expr left = ParseNot();
        while (Peek(TokenKind.Name, "and")) { int at = tokens[next++].Position; left = new BinaryExpr("and", left, ParseNot(), at); }
        return left;
    }

    private Expr ParseNot()
    {
        if (Peek(TokenKind.Name, "not")) { int at = tokens[next++].Position; return new UnaryExpr("not", ParseNot(), at); }
        return ParseComparison();
    }

    private Expr ParseComparison()
    {
        Expr left = ParseAdditive();
        while (true)
        {
            if (next >= tokens.Count) return left;
            Token token = tokens[next];
            if (token.Kind == TokenKind.Symbol && token.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                next++;
                left = new BinaryExpr(token.Value, left, ParseAdditive(), token.Position);
            }
            else if (token.Kind == TokenKind.Name && token.Value == "in")
            {
                next++;
                left = new BinaryExpr("in", left, ParseAdditive(), token.Position);
            }
            else if (token.Kind == TokenKind.Name && token.Value == "not" && next + 1 < tokens.Count && tokens[next + 1] is { Kind: TokenKind.Name, Value: "in" })
            {
                next += 2;
                left = new UnaryExpr("not", new BinaryExpr("in", left, ParseAdditive(), token.Position), token.Position);
            }
            else return left;
        }
    }

    private Expr ParseAdditive()
    {
        Expr left = ParseConcat();
        while (next < tokens.Count && tokens[next] is { Kind: TokenKind.Symbol, Value: "+" or "-" } token)
        {
            next++;
            left = new BinaryExpr(token.Value, left, ParseConcat(), token.Position);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        Expr left = ParseUnary();
        while (true)
        {
            if (next < tokens.Count && tokens[next] is { Kind: TokenKind.Symbol, Value: "~" } token)
            {
                next++;
                left = new BinaryExpr("~", left, ParseUnary(), token.Position);
            }
            else if (next < tokens.Count && tokens[next] is { Kind: TokenKind.Symbol, Value: "*" or "/" or "//" or "%" or "**" } unsupported)
                throw Error($"unsupported operator '{unsupported.Value}'", unsupported.Position);
            else return left;
        }
    }

    private Expr ParseUnary()
    {
        if (Peek(TokenKind.Symbol, "-")) { int at = tokens[next++].Position; return new UnaryExpr("-", ParseUnary(), at); }
        Expr expr = ParsePostfix(ParsePrimary());
        while (true)
        {
            if (Peek(TokenKind.Symbol, "|"))
            {
                next++;
                Token filter = Expect(TokenKind.Name, "a filter name");
                if (!SupportedFilters.Contains(filter.Value)) throw Error($"unsupported filter '{filter.Value}'", filter.Position);
                if (Peek(TokenKind.Symbol, "(")) throw Error($"unsupported arguments to filter '{filter.Value}'", tokens[next].Position);
                expr = new FilterExpr(expr, filter.Value, filter.Position);
            }
            else if (Peek(TokenKind.Name, "is"))
            {
                next++;
                bool negated = Peek(TokenKind.Name, "not");
                if (negated) next++;
                Token test = Expect(TokenKind.Name, "a test name");
                if (!SupportedTests.Contains(test.Value)) throw Error($"unsupported test '{test.Value}'", test.Position);
                expr = new TestExpr(expr, test.Value, negated, test.Position);
            }
            else return expr;
        }
    }

    private Expr ParsePostfix(Expr expr)
    {
        while (true)
        {
            if (Peek(TokenKind.Symbol, "["))
            {
                int at = tokens[next++].Position;
                if (Peek(TokenKind.Symbol, ":")) throw Error("unsupported slice", tokens[next].Position);
                Expr key = ParseExpression();
                if (Peek(TokenKind.Symbol, ":")) throw Error("unsupported slice", tokens[next].Position);
                Expect(TokenKind.Symbol, "']'", "]");
                expr = new ItemExpr(expr, key, at);
            }
            else if (Peek(TokenKind.Symbol, "."))
            {
                next++;
                Token name = Expect(TokenKind.Name, "an attribute name");
                if (Peek(TokenKind.Symbol, "(")) throw Error($"unsupported method call '.{name.Value}()'", name.Position);
                expr = new AttributeExpr(expr, name.Value, name.Position);
            }
            else if (Peek(TokenKind.Symbol, "("))
                throw Error("unsupported call", tokens[next].Position);
            else return expr;
        }
    }

    private Expr ParsePrimary()
    {
        if (next >= tokens.Count) throw Error("unexpected end of template in an expression", source.Length);
        Token token = tokens[next++];
        switch (token.Kind)
        {
            case TokenKind.String:
                return new LiteralExpr(token.Value, token.Position);
            case TokenKind.Integer:
                return new LiteralExpr(long.Parse(token.Value, CultureInfo.InvariantCulture), token.Position);
            case TokenKind.Name:
                switch (token.Value)
                {
                    case "true" or "True": return new LiteralExpr(true, token.Position);
                    case "false" or "False": return new LiteralExpr(false, token.Position);
                    case "none" or "None": return new LiteralExpr(null, token.Position);
                }
                if (Peek(TokenKind.Symbol, "("))
                {
                    if (token.Value != "raise_exception") throw Error($"unsupported function '{token.Value}'", token.Position);
                    next++;
                    Expr message = ParseExpression();
                    Expect(TokenKind.Symbol, "')'", ")");
                    return new RaiseExpr(message, token.Position);
                }
                return new VariableExpr(token.Value, token.Position);
            case TokenKind.Symbol when token.Value == "(":
            {
                Expr inner = ParseExpression();
                if (Peek(TokenKind.Symbol, ",")) throw Error("unsupported tuple", tokens[next].Position);
                Expect(TokenKind.Symbol, "')'", ")");
                return inner;
            }
            case TokenKind.Symbol when token.Value == "[":
            {
                var items = new List<Expr>();
                while (!Peek(TokenKind.Symbol, "]"))
                {
                    items.Add(ParseExpression());
                    if (!Peek(TokenKind.Symbol, ",")) break;
                    next++;
                }
                Expect(TokenKind.Symbol, "']'", "]");
                return new ListExpr(items, token.Position);
            }
            case TokenKind.Symbol when token.Value == "{":
                throw Error("unsupported dict literal", token.Position);
            default:
                throw Error($"unexpected '{(token.Kind == TokenKind.TagEnd ? token.Value : token.Value)}' in an expression", token.Position);
        }
    }

    private bool Peek(TokenKind kind, string value) => next < tokens.Count && tokens[next].Kind == kind && tokens[next].Value == value;

    private Token Expect(TokenKind kind, string what, string? value = null)
    {
        if (next >= tokens.Count) throw Error($"expected {what}, found the end of the template", source.Length);
        Token token = tokens[next];
        if (token.Kind != kind || (value is not null && token.Value != value))
            throw Error($"expected {what}, found '{(token.Kind == TokenKind.Text ? "text" : token.Value)}'", token.Position);
        next++;
        return token;
    }

    private ChatTemplateException Error(string message, int position) => Error(source, message, position);

    internal static ChatTemplateException Error(string source, string message, int position)
    {
        (int line, int column) = LineAndColumn(source, position);
        return new ChatTemplateException(message, line, column);
    }

    internal static (int Line, int Column) LineAndColumn(string source, int position)
    {
        position = Math.Clamp(position, 0, source.Length);
        int line = 1, lineStart = 0;
        for (int i = 0; i < position; i++)
            if (source[i] == '\n') { line++; lineStart = i + 1; }
        return (line, position - lineStart + 1);
    }
}
