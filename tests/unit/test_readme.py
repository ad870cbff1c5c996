"""The README's Python examples are valid Python that imports only what the package (or the
integration module it names) exports."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("block", BLOCKS, ids=[f"example {n}" for n in range(len(BLOCKS))])
def test_each_readme_example_parses_and_imports_only_public_names(block: str) -> None:
    tree = ast.parse(block.replace("\n    ...\n", "\n    pass\n"))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agent_engine"):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                assert alias.name in module.__all__, f"{node.module}.{alias.name}"
