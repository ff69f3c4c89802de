"""The package's layout holds: no import cycle, ROS only in ros/ (and the bag tools' rosbags), cited docs exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gradunc_ros"
ROS_IMPORTS = ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "rcl_interfaces", "vision_msgs", "lifecycle_msgs")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Modules a file imports, at any depth of its code (a lazy import can close a cycle too), but not under
    ``if TYPE_CHECKING``."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    ifs = [node for node in ast.walk(tree) if isinstance(node, ast.If)]
    guarded = [node for node in ifs if "TYPE_CHECKING" in ast.unparse(node.test)]
    skipped = {id(n) for node in guarded for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}


def test_no_module_of_the_package_imports_itself_through_others() -> None:
    graph = _graph()
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            if other.startswith(name + ".") or name.startswith(other + "."):
                continue  # a package and its own modules
            assert state.get(other) != 1, "import cycle: " + " -> ".join([*trail, name, other])
            if other not in state:
                visit(other, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_only_the_ros_layer_imports_ros() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name.startswith("gradunc_ros.ros") or name.startswith("gradunc_ros.tools"):
            continue  # the node, and the CLIs that talk to a live graph (gradunc-bag live, selfcheck)
        used = {m for m in _imports(path) if m.split(".")[0] in ROS_IMPORTS}
        if used:
            offenders.append(f"{name}: {sorted(used)}")
    assert not offenders


def test_every_document_the_code_cites_is_in_the_repository() -> None:
    root = PACKAGE.parent
    cited = set()
    for path in [*PACKAGE.rglob("*.py"), *(root / "test").glob("*.py"), root / "README.md"]:
        cited.update(re.findall(r"docs/[\w-]+\.md", path.read_text()))
    assert cited, "nothing cites docs/"
    assert not [name for name in sorted(cited) if not (root / name).is_file()]
