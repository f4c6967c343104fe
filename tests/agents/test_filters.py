import pytest

from agents.filters import (
    FactTerm,
    Filter,
    FilterSyntaxError,
    Node,
    parse_compound,
    parse_fact_term,
)

WEB = Node(
    "web01.dc1.example",
    {
        "customer": "acme",
        "environment": "prod",
        "cpus": 8,
        "os": {"family": "debian"},
        "tags": ["a", "b"],
        "release": "9.4",
    },
    ["apache", "base", "role::web"],
    ["rpcutil", "echo"],
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer=acme", FactTerm("customer", "==", "acme")),
        ("customer == acme", FactTerm("customer", "==", "acme")),
        ("cpus>=4", FactTerm("cpus", ">=", "4")),
        ("os=/deb/", FactTerm("os", "=~", "deb")),
        ("os=~/deb/", FactTerm("os", "=~", "deb")),
        ("os!=/deb/", FactTerm("os", "!~", "deb")),
        ("os!=debian", FactTerm("os", "!=", "debian")),
    ],
)
def test_parse_fact_term(text, expected):
    assert parse_fact_term(text) == expected


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        (
            "customer=>acme",
            "unknown operator '=>' at column 9; expected one of == != =~ < > <= >=",
            9,
        ),
        ("customer", "must look like fact=value", 1),
        ("=acme", "invalid fact name ''", 1),
        ("cpus</4/", "cannot take a regex value", 5),
        ("os=/(a+)+/", "nested quantifiers", 3),
    ],
)
def test_parse_fact_term_errors(text, message, column):
    with pytest.raises(FilterSyntaxError) as err:
        parse_fact_term(text)
    assert message in err.value.message
    assert err.value.column == column


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("((customer=acme and environment=prod) or environment=staging) and /apache/", True),
        ("customer=acme and environment=staging", False),
        ("customer=acmeinc or environment=prod", True),
        ("apache", True),
        ("nginx", False),
        ("not nginx", True),
        ("!apache", False),
        ("/^role::/", True),
        ("class:/ngi/", False),
        ("role::web", True),
        ("agent:echo and agent:rpcutil", True),
        ("agent:puppet", False),
        ("identity:web01.dc1.example", True),
        ("identity:/^db/", False),
        ("cpus>4 and cpus<=8", True),
        ("cpus>10", False),
        ("cpus=8.0", True),
        ("release<10", True),  # numeric: 9.4 < 10 (as strings "9.4" > "10")
        ("customer<b", True),  # string comparison
        ("os.family=debian", True),
        ("os.family=~/^deb/", True),
        ("tags=b", True),
        ("tags!=b", False),
        ("missing!=x", False),  # a missing fact never matches
        ('customer="acme"', True),
        ("customer='acme'", True),
        ("environment!=dev AND NOT class:nginx", True),
    ],
)
def test_compound_matching(text, matches):
    assert Filter.parse(text).matches(WEB) is matches


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("customer=>acme", "unknown operator '=>' at column 9; expected one of", 9),
        ("(customer=acme", "expected ')' at column 15 to close '(' at column 1", 15),
        ("customer=acme)", "unexpected ')' at column 14", 14),
        ("customer=acme and", "expected a filter term at column 18, found end of filter", 18),
        ("customer=", "expected a value after '=' at column 10", 10),
        ("/apache", "unterminated regex starting at column 1", 1),
        ('x="abc', "unterminated string starting at column 3", 3),
        ("a and #", "unexpected character '#' at column 7", 7),
        ("/(a|a)*/", "alternation inside a repeat", 1),
        (r"/(a)\1/", "backreferences are not allowed", 1),
        ("/" + "a" * 201 + "/", "over the 200 limit", 1),
        ("a b", "unexpected 'b' at column 3", 3),
        ("(" * 100 + "a" + ")" * 100, "nests deeper than 64 levels", 65),
    ],
)
def test_compound_errors(text, message, column):
    with pytest.raises(FilterSyntaxError) as err:
        Filter.parse(text)
    assert message in err.value.message
    assert err.value.column == column


def test_structured_filter_kinds_are_anded_identities_ored():
    f = Filter(
        fact=[parse_fact_term("customer=acme")],
        cf_class=["apache"],
        agent=["rpcutil"],
        identity=["db01", "/^web/"],
    )
    assert f.matches(WEB)
    assert not Filter(fact=f.fact, cf_class=["nginx"]).matches(WEB)
    assert not Filter(identity=["db01"]).matches(WEB)
    assert Filter().matches(WEB) and Filter().is_empty()


def test_to_dict_from_dict_round_trip_and_describe():
    f = Filter(
        fact=[parse_fact_term("cpus>2"), parse_fact_term("os!=/rhel/")],
        cf_class=["/apa/"],
        agent=["rpcutil"],
        identity=["web1", "web2"],
        compound='environment=prod or note="a b"',
    )
    assert Filter.from_dict(f.to_dict()) == f
    assert f.describe() == (
        "cpus>2 and os!~/rhel/ and class:/apa/ and agent:rpcutil and "
        '(identity:web1 or identity:web2) and (environment==prod or note=="a b")'
    )
    assert Filter.parse(f.describe()).describe() == f.describe()
    assert Filter().describe() == ""
    assert Filter.parse("  ").is_empty()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "filter must be an object"),
        ({"bogus": []}, "unknown filter key(s) bogus"),
        ({"fact": "x"}, "'fact' must be a list of dict"),
        ({"fact": [{"fact": "a", "operator": "=>", "value": "b"}]}, "unknown operator '=>'"),
        ({"fact": [{"fact": "a"}]}, "exactly 'fact', 'operator' and 'value'"),
        ({"cf_class": [1]}, "must be a list of str"),
        ({"identity": ["/(a+)+/"]}, "nested quantifiers"),
        ({"compound": 5}, "must be a string or null"),
        ({"compound": "a and"}, "expected a filter term"),
    ],
)
def test_from_dict_errors(data, message):
    with pytest.raises(FilterSyntaxError) as err:
        Filter.from_dict(data)
    assert message in err.value.message


def test_parse_compound_is_cached():
    assert parse_compound("apache and base") is parse_compound("apache and base")


def test_non_string_inputs():
    for bad in (None, 5, ["a"]):
        with pytest.raises(FilterSyntaxError):
            Filter.parse(bad)
        with pytest.raises(FilterSyntaxError):
            parse_compound(bad)
        with pytest.raises(FilterSyntaxError):
            parse_fact_term(bad)


@pytest.mark.parametrize("text", ['temp<"-5"', 'x=="-b"', 'x!="-"', 'a=="+1"'])
def test_describe_quotes_values_the_lexer_would_not_read_bare(text: str) -> None:
    parsed = Filter.parse(text)
    assert Filter.parse(parsed.describe()) == parsed
