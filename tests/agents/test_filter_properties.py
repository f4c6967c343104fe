"""Property tests: the parser only ever raises FilterSyntaxError, and matching agrees with
an independent reference evaluator written directly over generated expression trees."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.filters import Filter, FilterSyntaxError, Node, parse_compound

ALPHABET = string.ascii_letters + string.digits + " ()!=<>~/\\\"'._:-*+?[]|^$&#" + "éλ\t\n"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=60) | st.text(max_size=40))
def test_parser_only_raises_filter_syntax_error(text):
    try:
        flt = Filter.parse(text)
    except FilterSyntaxError as exc:
        assert exc.column is None or 1 <= exc.column <= len(text) + 1
        return
    flt.matches(Node("n", {"a": "1", "b": ["x"]}, ["c"], ["rpcutil"]))
    Filter.parse(flt.describe())


FACTS = ("customer", "environment", "cpus")
VALUES = {"customer": ("acme", "globex"), "environment": ("prod", "dev"), "cpus": ("2", "8", "16")}
CLASSES = ("apache", "nginx", "base")
OPS = ("==", "!=", "<", ">", "<=", ">=")


def _ref_compare(actual, op, expected):
    try:
        a, b = float(actual), float(expected)
    except ValueError:
        a, b = actual, expected
    return {"==": a == b, "!=": a != b, "<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


@st.composite
def fact_term(draw):
    fact = draw(st.sampled_from(FACTS))
    op = draw(st.sampled_from(OPS))
    value = draw(st.sampled_from(VALUES[fact]))
    text = f"{fact}{op}{value}"
    return text, lambda node: fact in node.facts and _ref_compare(str(node.facts[fact]), op, value)


@st.composite
def class_term(draw):
    name = draw(st.sampled_from(CLASSES))
    if draw(st.booleans()):
        return f"/^{name[:3]}/", lambda node: any(c.startswith(name[:3]) for c in node.classes)
    return name, lambda node: name in node.classes


def combine(children):
    def negate(pair):
        text, ref = pair
        return f"not ({text})", lambda node: not ref(node)

    def join(pairs, word):
        texts = [f"({t})" for t, _ in pairs]
        refs = [r for _, r in pairs]
        if word == "and":
            return f" {word} ".join(texts), lambda node: all(r(node) for r in refs)
        return f" {word} ".join(texts), lambda node: any(r(node) for r in refs)

    return children.map(negate) | st.tuples(
        st.lists(children, min_size=2, max_size=3), st.sampled_from(["and", "or"])
    ).map(lambda args: join(*args))


expressions = st.recursive(fact_term() | class_term(), combine, max_leaves=8)

nodes = st.builds(
    lambda facts, classes: Node("n1", facts, classes, ["rpcutil"]),
    st.fixed_dictionaries(
        {},
        optional={f: st.sampled_from(VALUES[f]) for f in FACTS},
    ),
    st.lists(st.sampled_from(CLASSES), unique=True),
)


@settings(max_examples=300, deadline=None)
@given(expressions, nodes)
def test_matching_agrees_with_reference(expr, node):
    text, reference = expr
    flt = Filter.parse(text)
    assert flt.matches(node) is reference(node), text
    # The canonical form selects the same nodes.
    assert Filter.parse(flt.describe()).matches(node) is reference(node)
    assert parse_compound(text) == parse_compound(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=ALPHABET, max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["fact", "operator", "value", "x"]), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["fact", "cf_class", "agent", "identity", "compound", "other"]),
        json_values,
        max_size=4,
    )
    | json_values
)
def test_from_dict_only_raises_filter_syntax_error(data):
    try:
        flt = Filter.from_dict(data)
    except FilterSyntaxError:
        return
    flt.matches(Node("n", {"fact": "1"}, ["c"], ["rpcutil"]))
    assert Filter.from_dict(flt.to_dict()) == flt
