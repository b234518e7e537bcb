using System.Collections;
using System.Globalization;
using System.Text;

namespace Saber.Text;

/// <summary>
/// A Hugging Face <c>chat_template</c> (Jinja) parsed once and rendered for conversations. Only a subset of Jinja is
/// supported, enough for LLaDA-8B-Instruct's and Dream-v0-Instruct-7B's templates; anything else is a
/// <see cref="ChatTemplateException"/> naming the construct and its position, at <see cref="Parse"/> where possible.
/// </summary>
/// <remarks>
/// The subset: text; <c>{{ expr }}</c>; <c>{% if %}/{% elif %}/{% else %}/{% endif %}</c>; <c>{% for x in xs %}</c> with
/// <c>loop.index0</c>, <c>loop.index</c>, <c>loop.first</c>, <c>loop.last</c>, <c>loop.length</c>; <c>{% set x = expr %}</c>
/// (scoped to the loop body it is in, as in Jinja); comments; whitespace control (<c>{%- -%}</c>, <c>{{- -}}</c>, and
/// transformers' <c>trim_blocks</c>/<c>lstrip_blocks</c>). Expressions: string literals (escapes <c>\n \t \r \\ \' \"</c>),
/// integers, <c>true/false/none</c>, list literals, <c>+ -</c>, <c>~</c>, <c>== != &lt; &gt; &lt;= &gt;=</c>, <c>in</c>,
/// <c>not in</c>, <c>and or not</c>, <c>x['key']</c>, <c>x[-1]</c>, <c>x.key</c>, filters <c>trim length upper lower</c>,
/// tests <c>is defined</c>, <c>is undefined</c>, <c>is none</c> (and <c>is not ...</c>), and <c>raise_exception(message)</c>.
/// An undefined variable prints as nothing and is false, as in Jinja; using it in any other way is an error.
/// </remarks>
public sealed class ChatTemplate
{
    private readonly List<Node> nodes;

    private ChatTemplate(string source, List<Node> nodes)
    {
        Source = source;
        this.nodes = nodes;
    }

    /// <summary>The template text.</summary>
    public string Source { get; }

    /// <summary>Parses <paramref name="source"/>.</summary>
    /// <exception cref="ChatTemplateException">Malformed, or outside the supported subset.</exception>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(source, new ChatTemplateParser(source).Parse());
    }

    /// <summary>
    /// Renders the template with <c>messages</c> (a list of <c>{role, content}</c>), <c>add_generation_prompt</c> and
    /// <paramref name="variables"/> (e.g. <c>bos_token</c>, <c>eos_token</c>; values are strings, booleans, integers,
    /// null, lists or string-keyed dictionaries of these).
    /// </summary>
    /// <exception cref="ChatTemplateException">An error while rendering, or the template's <c>raise_exception</c>.</exception>
    public string Render(IReadOnlyList<ChatTurn> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, object?>? variables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var globals = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (variables is not null)
            foreach ((string name, object? value) in variables) globals[name] = Import(value);
        globals["messages"] = messages.Select((m, i) => (object?)new Dictionary<string, object?>
        {
            ["role"] = (m ?? throw new ArgumentException($"Message {i} is null.", nameof(messages))).Role,
            ["content"] = m.Content,
        }).ToList();
        globals["add_generation_prompt"] = addGenerationPrompt;
        var output = new StringBuilder();
        new Renderer(Source, output).Run(nodes, new Scope(globals, null));
        return output.ToString();
    }

    // Values inside the renderer: string, bool, long, null, Undefined, List<object?>, Dictionary<string, object?>.
    private static object? Import(object? value) => value switch
    {
        null or string or bool or long => value,
        int i => (long)i,
        ChatTurn turn => new Dictionary<string, object?> { ["role"] = turn.Role, ["content"] = turn.Content },
        IReadOnlyDictionary<string, object?> map => map.ToDictionary(p => p.Key, p => Import(p.Value), StringComparer.Ordinal),
        IEnumerable list => list.Cast<object?>().Select(Import).ToList(),
        _ => throw new ArgumentException($"Chat template variables cannot hold a {value.GetType().Name}."),
    };

    private sealed class Undefined(string name)
    {
        public string Name { get; } = name;
    }

    private sealed class Scope(Dictionary<string, object?> variables, Scope? parent)
    {
        public Scope? Parent { get; } = parent;

        public object? Get(string name) =>
            variables.TryGetValue(name, out object? value) ? value : Parent is not null ? Parent.Get(name) : new Undefined(name);

        public void Set(string name, object? value) => variables[name] = value;
    }

    private sealed class Renderer(string source, StringBuilder output)
    {
        public void Run(List<Node> body, Scope scope)
        {
            foreach (Node node in body)
            {
                switch (node)
                {
                    case TextNode text:
                        output.Append(text.Text);
                        break;
                    case OutputNode print:
                        output.Append(Display(Evaluate(print.Value, scope)));
                        break;
                    case SetNode set:
                        scope.Set(set.Name, Evaluate(set.Value, scope));
                        break;
                    case IfNode branch:
                        List<Node>? taken = branch.Else;
                        foreach ((Expr condition, List<Node> branchBody) in branch.Branches)
                            if (Truthy(Evaluate(condition, scope))) { taken = branchBody; break; }
                        Run(taken, scope);
                        break;
                    case ForNode loop:
                        RunLoop(loop, scope);
                        break;
                }
            }
        }

        private void RunLoop(ForNode loop, Scope scope)
        {
            object? items = Evaluate(loop.Items, scope);
            List<object?> list = items switch
            {
                List<object?> l => l,
                Dictionary<string, object?> d => d.Keys.Cast<object?>().ToList(),
                string s => s.Select(c => (object?)c.ToString()).ToList(),
                Undefined u => throw Error($"'{u.Name}' is undefined", loop.Items.Position),
                _ => throw Error($"cannot loop over {TypeName(items)}", loop.Items.Position),
            };
            for (int i = 0; i < list.Count; i++)
            {
                var loopInfo = new Dictionary<string, object?>
                {
                    ["index0"] = (long)i, ["index"] = (long)(i + 1), ["first"] = i == 0, ["last"] = i == list.Count - 1,
                    ["length"] = (long)list.Count, ["revindex"] = (long)(list.Count - i), ["revindex0"] = (long)(list.Count - i - 1),
                };
                // Each iteration is a scope of its own: a set inside the body does not outlive it (Jinja's rule).
                var body = new Scope(new Dictionary<string, object?> { [loop.Variable] = list[i], ["loop"] = loopInfo }, scope);
                Run(loop.Body, body);
            }
        }

        private object? Evaluate(Expr expr, Scope scope)
        {
            switch (expr)
            {
                case LiteralExpr literal: return literal.Value;
                case ListExpr list: return list.Items.Select(e => Evaluate(e, scope)).ToList();
                case VariableExpr variable: return scope.Get(variable.Name);
                case ItemExpr item: return Item(Evaluate(item.Target, scope), Evaluate(item.Key, scope), item.Position);
                case AttributeExpr attribute: return Item(Evaluate(attribute.Target, scope), attribute.Name, attribute.Position);
                case UnaryExpr { Operator: "not" } not: return !Truthy(Evaluate(not.Operand, scope));
                case UnaryExpr negate:
                    return Evaluate(negate.Operand, scope) is long n ? -n : throw Error("unary '-' needs an integer", negate.Position);
                case BinaryExpr { Operator: "and" } and:
                {
                    object? left = Evaluate(and.Left, scope);
                    return Truthy(left) ? Evaluate(and.Right, scope) : left;
                }
                case BinaryExpr { Operator: "or" } or:
                {
                    object? left = Evaluate(or.Left, scope);
                    return Truthy(left) ? left : Evaluate(or.Right, scope);
                }
                case BinaryExpr binary: return Binary(binary, Evaluate(binary.Left, scope), Evaluate(binary.Right, scope));
                case FilterExpr filter: return Filter(filter, Evaluate(filter.Target, scope));
                case TestExpr test:
                {
                    object? value = Evaluate(test.Target, scope);
                    bool result = test.Test switch
                    {
                        "defined" => value is not Undefined,
                        "undefined" => value is Undefined,
                        _ => value is null,   // "none"
                    };
                    return result != test.Negated;
                }
                case RaiseExpr raise:
                {
                    (int line, int column) = ChatTemplateParser.LineAndColumn(source, raise.Position);
                    throw new ChatTemplateException("raise_exception", line, column, Display(Evaluate(raise.Message, scope)));
                }
                default:
                    throw Error($"unsupported expression {expr.GetType().Name}", expr.Position);
            }
        }

        private object? Item(object? target, object? key, int position)
        {
            switch (target)
            {
                case Dictionary<string, object?> map when key is string name:
                    return map.TryGetValue(name, out object? value) ? value : new Undefined(name);
                case List<object?> list when key is long index:
                    long at = index < 0 ? list.Count + index : index;
                    return at >= 0 && at < list.Count ? list[(int)at] : new Undefined($"[{index}]");
                case string text when key is long index:
                    long c = index < 0 ? text.Length + index : index;
                    return c >= 0 && c < text.Length ? text[(int)c].ToString() : new Undefined($"[{index}]");
                case Undefined undefined:
                    throw Error($"'{undefined.Name}' is undefined", position);
                default:
                    throw Error($"cannot look up {Describe(key)} in {TypeName(target)}", position);
            }
        }

        private object? Binary(BinaryExpr binary, object? left, object? right)
        {
            switch (binary.Operator)
            {
                case "==": return ValuesEqual(left, right);
                case "!=": return !ValuesEqual(left, right);
                case "~": return Display(left) + Display(right);
                case "in":
                    return right switch
                    {
                        string text when left is string part => text.Contains(part, StringComparison.Ordinal),
                        List<object?> list => list.Any(item => ValuesEqual(item, left)),
                        Dictionary<string, object?> map => left is string k && map.ContainsKey(k),
                        _ => throw Error($"'in' needs a string, list or dict on its right, not {TypeName(right)}", binary.Position),
                    };
            }
            ThrowIfUndefined(left, binary.Position);
            ThrowIfUndefined(right, binary.Position);
            switch (binary.Operator, left, right)
            {
                case ("+", string a, string b): return a + b;
                case ("+", long a, long b): return a + b;
                case ("+", List<object?> a, List<object?> b): return a.Concat(b).ToList();
                case ("-", long a, long b): return a - b;
                case ("<" or ">" or "<=" or ">=", long a, long b): return Compare(binary.Operator, a.CompareTo(b));
                case ("<" or ">" or "<=" or ">=", string a, string b): return Compare(binary.Operator, string.CompareOrdinal(a, b));
            }
            throw Error($"cannot apply '{binary.Operator}' to {TypeName(left)} and {TypeName(right)}", binary.Position);
        }

        // Python's str.strip() (Jinja's trim) strips what str.isspace() calls whitespace, which includes U+001C-U+001F, unlike char.IsWhiteSpace.
        private static readonly char[] PythonWhitespace =
            [.. "\t\n\v\f\r\u001C\u001D\u001E\u001F \u0085\u00A0\u1680\u2028\u2029\u202F\u205F\u3000", .. Enumerable.Range(0x2000, 11).Select(c => (char)c)];

        private static bool Compare(string op, int order) => op switch
        {
            "<" => order < 0, ">" => order > 0, "<=" => order <= 0, _ => order >= 0,
        };

        private object? Filter(FilterExpr filter, object? value)
        {
            ThrowIfUndefined(value, filter.Position);
            return (filter.Filter, value) switch
            {
                ("trim", string s) => s.Trim(PythonWhitespace),
                ("upper", string s) => s.ToUpperInvariant(),
                ("lower", string s) => s.ToLowerInvariant(),
                ("length", string s) => (long)s.Length,
                ("length", List<object?> l) => (long)l.Count,
                ("length", Dictionary<string, object?> d) => (long)d.Count,
                _ => throw Error($"filter '{filter.Filter}' cannot take {TypeName(value)}", filter.Position),
            };
        }

        private void ThrowIfUndefined(object? value, int position)
        {
            if (value is Undefined undefined) throw Error($"'{undefined.Name}' is undefined", position);
        }

        private static bool ValuesEqual(object? a, object? b) => (a, b) switch
        {
            (Undefined, _) or (_, Undefined) => false,
            (null, null) => true,
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => ValuesEqual(p.First, p.Second)),
            _ => Equals(a, b),
        };

        private static bool Truthy(object? value) => value switch
        {
            null or Undefined => false,
            bool b => b,
            long n => n != 0,
            string s => s.Length > 0,
            List<object?> l => l.Count > 0,
            Dictionary<string, object?> d => d.Count > 0,
            _ => true,
        };

        // What {{ value }} prints: Python's str() of it.
        private static string Display(object? value) => value switch
        {
            null => "None",
            Undefined => "",
            string s => s,
            bool b => b ? "True" : "False",
            long n => n.ToString(CultureInfo.InvariantCulture),
            List<object?> l => "[" + string.Join(", ", l.Select(Describe)) + "]",
            Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(p => Describe(p.Key) + ": " + Describe(p.Value))) + "}",
            _ => value.ToString() ?? "",
        };

        private static string Describe(object? value) => value is string s ? "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'" : Display(value);

        private static string TypeName(object? value) => value switch
        {
            null => "none",
            Undefined u => $"undefined '{u.Name}'",
            string => "a string",
            bool => "a boolean",
            long => "an integer",
            List<object?> => "a list",
            Dictionary<string, object?> => "a dict",
            _ => value.GetType().Name,
        };

        private ChatTemplateException Error(string message, int position) => ChatTemplateParser.Error(source, message, position);
    }
}
