"""The two distributions built from this tree: switchboard-node (packaging/node/) and the
portal's, switchboard-portal (pyproject.toml at the root).

Each wheel is built offline the way a packager would (``pip wheel --no-deps
--no-build-isolation``, no index), from a copy of the files it is made of: setuptools keeps its
``build/`` directory in the source tree, and a stale ``build/lib`` there would put files deleted
since (or a module moved away, like the embedded broker) back into a wheel.

The node's wheel is then run with nothing but the standard library, itself and its declared
dependencies (and theirs) on ``sys.path``: Django, Celery, Channels, coilmq and the portal are
not importable there, and every module of the node still imports.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest

import agents

ROOT = Path(__file__).resolve().parents[2]
NODE_REQUIREMENTS = {"stomp.py": "8.0.1", "cryptography": "38.0.4", "PyYAML": "6.0"}
NOT_ON_A_NODE = ["django", "celery", "channels", "coilmq", "kombu", "portal", "harness", "tests"]
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")


def build_wheel(tree: Path, project: str, out: Path) -> Path:
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--quiet", str(tree / project), "-w", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = out.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def node_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("node-tree")
    shutil.copytree(ROOT / "agents", tree / "agents", ignore=_IGNORE)
    (tree / "packaging" / "node").mkdir(parents=True)
    shutil.copy(ROOT / "packaging" / "node" / "pyproject.toml", tree / "packaging" / "node")
    return build_wheel(tree, "packaging/node", tree / "dist")


@pytest.fixture(scope="module")
def portal_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("portal-tree")
    for package in ("agents", "harness", "portal"):
        shutil.copytree(ROOT / package, tree / package, ignore=_IGNORE)
    shutil.copy(ROOT / "pyproject.toml", tree)
    return build_wheel(tree, ".", tree / "dist")


def dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        [path] = [n for n in archive.namelist() if re.fullmatch(rf"[^/]+\.dist-info/{name}", n)]
        return archive.read(path).decode()


def metadata(wheel: Path) -> Message:
    return HeaderParser().parsestr(dist_info(wheel, "METADATA"))


def console_scripts(wheel: Path) -> dict[str, str]:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(dist_info(wheel, "entry_points.txt"))
    return dict(entry_points["console_scripts"])


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
    assert match, spec
    return canonical(match.group())


def tree_files(package: str) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


# -- the node ---------------------------------------------------------------------------------


def test_node_wheel_holds_exactly_the_node_code_and_every_ddl(node_wheel):
    with zipfile.ZipFile(node_wheel) as archive:
        names = [n for n in archive.namelist() if ".dist-info/" not in n]
    assert all(n.startswith("agents/") for n in names), names
    shipped = set(names)
    code = {f for f in tree_files("agents") if f.endswith(".py")}
    ddls = {p.relative_to(ROOT).as_posix() for p in (ROOT / "agents/plugins").glob("*/ddl.json")}
    assert len(ddls) >= 8
    assert shipped == code | ddls
    assert not any("embedded_broker" in n for n in names)
    # Each plugin with its DDL: a plugin package is agents/plugins/<name>/ with ddl.json.
    plugins = {p.parent.name for p in (ROOT / "agents/plugins").glob("*/__init__.py")}
    assert {f"agents/plugins/{p}/ddl.json" for p in plugins} <= shipped


def test_node_metadata_name_version_and_dependencies(node_wheel):
    meta = metadata(node_wheel)
    assert meta["Name"] == "switchboard-node"
    assert meta["Version"] == agents.__version__
    assert meta["Requires-Python"] == ">=3.11"
    requires = meta.get_all("Requires-Dist") or []
    assert sorted(requires) == sorted(f"{name}>={low}" for name, low in NODE_REQUIREMENTS.items())


def test_node_console_scripts(node_wheel):
    assert console_scripts(node_wheel) == {
        "switchboard-node": "agents.daemon:main",
        "switchboard-simulator": "agents.simulator:main",
    }


def dependency_closure(names: list[str]) -> set[str]:
    """The distributions ``names`` need at run time here, by canonical name (extras left out)."""
    seen: set[str] = set()
    todo = [canonical(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in importlib.metadata.requires(name) or []:
            if "extra ==" not in spec and "python_full_version < '3.11'" not in spec:
                todo.append(requirement_name(spec))
    return seen


def link_dependencies(target: Path) -> None:
    """Links to the node's dependencies' top-level modules only, not this venv's site-packages."""
    wanted = dependency_closure(list(NODE_REQUIREMENTS))
    top_levels = {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if any(canonical(d) in wanted for d in dists)
    }
    assert {"stomp", "cryptography", "yaml"} <= top_levels
    for module in sorted(top_levels):
        spec = importlib.util.find_spec(module)
        if spec is None:  # a name a distribution lists but does not install as a module
            continue
        if spec.submodule_search_locations:
            source = Path(next(iter(spec.submodule_search_locations)))
        else:
            assert spec.origin, module
            source = Path(spec.origin)
        (target / source.name).symlink_to(source)


NODE_ONLY_CHECK = """
import importlib, io, json, pathlib, sys, contextlib
sys.path[:0] = [WHEEL, DEPS]
missing = []
for name in NOT_ON_A_NODE:
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
import agents
modules = sorted(
    ".".join(p.relative_to(WHEEL).with_suffix("").parts).removesuffix(".__init__")
    for p in pathlib.Path(WHEEL, "agents").rglob("*.py") if p.name != "__main__.py"
)
for module in modules:
    importlib.import_module(module)
from agents.daemon import main
from agents.plugins.base import shipped_ddl
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["--version"])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({
    "agents_file": agents.__file__, "missing": missing, "modules": modules,
    "version": out.getvalue(), "exit": code, "ddl": sorted(shipped_ddl("service").actions),
    "sys_path": sys.path,
}))
"""


def test_node_wheel_runs_with_only_its_dependencies(node_wheel, tmp_path):
    unpacked = tmp_path / "wheel"
    with zipfile.ZipFile(node_wheel) as archive:
        archive.extractall(unpacked)
    deps = tmp_path / "deps"
    deps.mkdir()
    link_dependencies(deps)
    code = (
        f"WHEEL = {str(unpacked)!r}\nDEPS = {str(deps)!r}\nNOT_ON_A_NODE = {NOT_ON_A_NODE!r}\n"
        + NODE_ONLY_CHECK
    )
    # -I: no PYTHON* variables, user site or script directory; -S: not even site-packages.
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["missing"] == NOT_ON_A_NODE, "importable where a node has none of them"
    assert Path(result["agents_file"]).is_relative_to(unpacked)
    assert not any("site-packages" in p for p in result["sys_path"]), result["sys_path"]
    assert "agents.daemon" in result["modules"] and "agents.simulator" in result["modules"]
    assert result["version"] == f"switchboard-node {agents.__version__}\n"
    assert result["exit"] == 0
    assert "restart" in result["ddl"]


def test_node_version_is_the_packages_own():
    text = (ROOT / "packaging/node/pyproject.toml").read_text()
    assert 'version = { attr = "agents.__version__" }' in text
    assert re.fullmatch(r"\d+\.\d+\.\d+", agents.__version__)


# -- the portal -------------------------------------------------------------------------------


PORTAL_RUNTIME = ["django", "channels", "channels-redis", "daphne", "celery", "stomp-py"]
PORTAL_RUNTIME += ["cryptography", "pyyaml", "coilmq", "djangorestframework", "psycopg"]


def test_portal_metadata_declares_its_runtime_dependencies(portal_wheel):
    meta = metadata(portal_wheel)
    assert meta["Name"] == "switchboard-portal"
    requires = meta.get_all("Requires-Dist") or []
    declared = {requirement_name(spec) for spec in requires}
    assert set(PORTAL_RUNTIME) <= declared
    # Lower bounds only: requirements.txt holds the exact pins for development and CI.
    assert all("<" not in spec and "==" not in spec for spec in requires), requires
    # Every runtime pin of requirements.txt is declared, and none of the tools.
    pinned = (ROOT / "requirements.txt").read_text().split("\n\n")[0].splitlines()
    runtime = {requirement_name(line) for line in pinned if line and not line.startswith("#")}
    assert declared == runtime


def test_portal_wheel_carries_the_embedded_broker_and_scripts(portal_wheel):
    with zipfile.ZipFile(portal_wheel) as archive:
        names = set(archive.namelist())
    assert "portal/core/embedded_broker.py" in names
    assert "agents/embedded_broker.py" not in names
    assert "agents/plugins/service/ddl.json" in names
    assert not any(n.startswith("tests/") for n in names)
    scripts = console_scripts(portal_wheel)
    assert scripts["switchboard-broker"] == "portal.core.embedded_broker:main"
    assert scripts["switchboard-node"] == "agents.daemon:main"
