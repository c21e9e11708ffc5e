"""The package's import graph follows the layer order of the design notes.

    _jit, _atomic, _cpus < tensor < autograd < nn (optim.py is a shim over nn) < the alphagrad root
    < train < cli and serve (side by side; serve may also use its extra: fastapi, uvicorn,
    pydantic)
    tokenizers: a leaf beside train that uses only _jit, _atomic and _cpus (and numpy, numba, regex,
    the standard library); train and cli may import it, and cli may import anything.
    _jit, _atomic and _cpus import nothing of the package; _atomic and _cpus only the standard
    library.

Every import is checked, including those inside functions.
"""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "alphagrad"
RANK = {"_jit": 0, "_atomic": 0, "_cpus": 0, "tensor": 1, "autograd": 2, "nn": 3, "optim": 3, "": 3.5,
        "train": 4, "cli": 5, "serve": 5}
BOTTOM = ("_jit", "_atomic", "_cpus")  # modules that import nothing of the package
# llvmlite is numba's own code generator, installed with it
RUNTIME_DEPENDENCIES = {"numpy", "numba", "llvmlite", "regex", "msgpack", "click", "tomli"}
TOKENIZER_DEPENDENCIES = {"numpy", "numba", "regex"}
SERVE_DEPENDENCIES = RUNTIME_DEPENDENCIES | {"fastapi", "starlette", "pydantic", "uvicorn"}
OPTIONAL_DEPENDENCIES = {"train": {"mpi4py"}}  # the mpi extra: data parallelism, imported lazily


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(name: str) -> str:
    """``alphagrad.nn.gpt`` -> ``nn``; the root package itself -> ``""``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_module(name: str) -> bool:
    if not name.startswith("alphagrad."):
        return False
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.is_dir() or path.with_suffix(".py").exists()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in the file, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module
            for (
                alias
            ) in node.names:  # from alphagrad import nn imports the subpackage, not the root
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) else target))
    return found


def allowed(source: str, target: str) -> bool:
    src, dst = layer(source), layer(target)
    if src == dst:
        return True
    if src in BOTTOM:
        return False
    if src == "tokenizers":
        return dst in BOTTOM
    if dst == "tokenizers":
        return RANK[src] >= RANK["train"]
    return RANK[dst] <= RANK[src]


def test_every_module_is_in_a_known_layer():
    for path in modules():
        assert layer(module_name(path)) in RANK.keys() | {"tokenizers"}, (
            f"{path}: no layer in the design"
        )


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_follow_the_layers(path):
    source = module_name(path)
    bad = []
    for line, target in imported_modules(path):
        top = target.split(".")[0]
        if top == "alphagrad":
            if not allowed(source, target):
                bad.append(f"line {line}: {source} imports {target}")
        elif top not in sys.stdlib_module_names and top != "__future__":
            deps = TOKENIZER_DEPENDENCIES if layer(source) == "tokenizers" else RUNTIME_DEPENDENCIES
            if layer(source) == "_jit":
                deps = {"numba"}
            if layer(source) in ("_atomic", "_cpus"):
                deps = set()
            if layer(source) == "serve":
                deps = SERVE_DEPENDENCIES
            deps = deps | OPTIONAL_DEPENDENCIES.get(layer(source), set())
            if top not in deps:
                bad.append(f"line {line}: {source} imports {target}, not a runtime dependency here")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    fake = tmp_path / "alphagrad"
    (fake / "tensor").mkdir(parents=True)
    (fake / "nn").mkdir()
    (fake / "tensor" / "ops.py").write_text("")
    module = fake / "tensor" / "bad.py"
    module.write_text(
        "from . import ops\n\ndef f():\n    from alphagrad.nn import gpt\n    import torch\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    found = imported_modules(module)
    assert found == [(1, "alphagrad.tensor.ops"), (4, "alphagrad.nn"), (5, "torch")]
    assert not allowed("alphagrad.tensor.bad", "alphagrad.nn")
    assert allowed("alphagrad.nn.gpt", "alphagrad.tensor.kernels")
    assert not allowed("alphagrad.tokenizers.bpe", "alphagrad.tensor")
    assert allowed("alphagrad.train.run", "alphagrad.tokenizers")
    assert not allowed("alphagrad.nn.gpt", "alphagrad.tokenizers")
    assert allowed("alphagrad.cli", "alphagrad.tokenizers")
    assert not allowed("alphagrad.autograd.tensor", "alphagrad")
    assert allowed("alphagrad.optim", "alphagrad.nn.optim")
