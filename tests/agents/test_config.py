from pathlib import Path

import pytest
import yaml

from agents.config import ConfigError, NodeConfig, config_from_dict, load_config
from agents.daemon import main
from agents.plugins.base import shipped_ddl
from agents.policy import parse_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "agents" / "examples"


def test_example_config_loads(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_NODE_PASSCODE", "from-env")
    config = load_config(EXAMPLES / "node.yaml")
    assert config.identity == "web01.dc1.example"
    assert config.facts["customer"] == "acme"
    assert config.facts["network"]["primary_ip"] == "10.1.2.3"
    assert config.classes == ["base", "monitoring", "apache"]
    assert config.collectives == ["mcollective", "dc1"]
    assert config.brokers == [("stomp1.dc1.example", 61613), ("stomp2.dc1.example", 61613)]
    assert config.login == "node" and config.passcode == "from-env"
    assert config.heartbeats == (10000, 10000)


def test_classes_file_and_defaults(tmp_path):
    (tmp_path / "classes.txt").write_text("# comment\nbase\n\nnginx\n")
    config = config_from_dict({"identity": "n1", "classes": "classes.txt"}, tmp_path)
    assert config.classes == ["base", "nginx"]
    assert config.collectives == ["mcollective"] and config.main_collective == "mcollective"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"bogus": 1}, "unknown setting(s) bogus"),
        ({"brokers": "nohost"}, "brokers: broker 'nohost' must be host:port"),
        ({"collectives": ["a"], "main_collective": "b"}, "main_collective 'b' is not in"),
        ({"facts": "missing.yaml"}, "facts file"),
        ({"collectives": ["bad.name"]}, "invalid collective name"),
    ],
)
def test_config_errors(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict(raw, tmp_path)


def test_main_reports_bad_config(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("bogus: 1\n")
    assert main(["--config", str(path)]) == 2


def test_example_config_names_every_setting_and_its_policy_parses():
    text = (EXAMPLES / "node.yaml").read_text()
    named = {line.lstrip("# ").split(":")[0] for line in text.splitlines() if ":" in line}
    assert set(NodeConfig.__dataclass_fields__) <= named
    assert set(yaml.safe_load(text)) <= set(NodeConfig.__dataclass_fields__)
    actions = shipped_ddl("service").actions
    policy = parse_policy((EXAMPLES / "policy" / "service.policy").read_text(), "p", actions)
    assert [r.line for r in policy.rules] == [3, 4] and policy.default_allow is False
