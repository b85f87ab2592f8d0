"""Every attribute a compiled class sets is declared in its .pxd.

A compiled class (a ``cdef class`` in the .pxd beside the module) has exactly the
fields its .pxd declares, its own and its bases'. A new ``self.x = ...`` that is not
declared passes every test of the plain-Python build and fails every compiled
request with AttributeError: this reads the sources (ast) and the .pxd files and
names what is missing, for every module that gateway/_native.py compiles.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gateway import _native

ROOT = Path(__file__).resolve().parent.parent

_CLASS = re.compile(r"^cdef class (\w+)(?:\((\w+)\))?:\s*$")
# The type may be a typed memoryview ("double[::1]").
_FIELD = re.compile(r"^\s+cdef\s+(?:(?:public|readonly)\s+)?([\w.]+(?:\[[\w:, ]*\])?)\s+(.+)$")


def declared_classes(folder: Path) -> dict[str, tuple[str | None, set[str]]]:
    """Every ``cdef class`` of every .pxd under ``folder``: name -> (base name, field names)."""
    classes: dict[str, tuple[str | None, set[str]]] = {}
    for pxd in sorted(folder.rglob("*.pxd")):
        current = None
        for line in pxd.read_text().splitlines():
            if not line.strip() or line.lstrip().startswith(("#", "@")):
                continue
            m = _CLASS.match(line)
            if m:
                assert m.group(1) not in classes, f"{m.group(1)} is declared twice ({pxd})"
                current = m.group(1)
                classes[current] = (m.group(2), set())
                continue
            if not line[0].isspace():
                current = None
                continue
            m = _FIELD.match(line)
            if current is not None and m and "(" not in line:  # a field, not a cdef/cpdef method
                names = m.group(2).split("#")[0]
                classes[current][1].update(n.strip() for n in names.split(",") if n.strip())
    return classes


def fields_of(classes: dict, name: str) -> set[str]:
    out: set[str] = set()
    while name is not None and name in classes:
        base, fields = classes[name]
        out |= fields
        name = base
    return out


def _self_targets(target: ast.AST, self_name: str):
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == self_name:
        yield target.attr, target.lineno
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _self_targets(elt, self_name)


def assigned_attributes(cls: ast.ClassDef):
    """(name, line) of every attribute an instance of ``cls`` gets: ``self.x = / += / : T =``,
    ``object.__setattr__(self, "x", ...)`` in its methods (nested functions included), and
    the fields of a dataclass."""
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if "ClassVar" not in ast.unparse(node.annotation):
                yield node.target.id, node.lineno
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.args.args:
            continue
        if any(isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod") for d in node.decorator_list):
            continue
        self_name = node.args.args[0].arg
        for sub in ast.walk(node):
            if isinstance(sub, ast.Assign):
                for target in sub.targets:
                    yield from _self_targets(target, self_name)
            elif isinstance(sub, (ast.AugAssign, ast.AnnAssign)):
                yield from _self_targets(sub.target, self_name)
            elif (isinstance(sub, ast.Call) and ast.unparse(sub.func) == "object.__setattr__" and len(sub.args) >= 2
                  and isinstance(sub.args[0], ast.Name) and sub.args[0].id == self_name
                  and isinstance(sub.args[1], ast.Constant)):
                yield sub.args[1].value, sub.lineno


def undeclared(root: Path, modules) -> list[str]:
    """'path:line: Class.attr' for every attribute a compiled class sets without declaring it."""
    classes = declared_classes(root / "gateway")
    problems = []
    for module in modules:
        source = root / (module.replace(".", "/") + ".py")
        tree = ast.parse(source.read_text(), str(source))
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            if cls.name not in classes:
                continue  # a plain Python class of a compiled module: any attribute goes
            declared = fields_of(classes, cls.name)
            for attr, line in assigned_attributes(cls):
                if attr not in declared:
                    problems.append(f"{source.relative_to(root)}:{line}: {cls.name}.{attr}")
    return sorted(set(problems))


def test_every_attribute_of_a_compiled_class_is_declared_in_its_pxd():
    problems = undeclared(ROOT, _native.MODULES)
    assert not problems, "declare these in the .pxd beside the module (or they fail compiled):\n" + "\n".join(problems)


def test_the_check_sees_the_compiled_classes():
    # A parser that found nothing would pass the test above without checking anything.
    classes = declared_classes(ROOT / "gateway")
    assert {"Exchange", "RequestView", "ClientProtocol", "Downstream", "UpstreamConnection", "Route"} <= set(classes)
    assert {"method", "client", "respond"} & fields_of(classes, "Exchange") == {"method", "client"}
    assert {"proto", "start", "route"} <= fields_of(classes, "Exchange")  # its own and its base's


def test_every_compiled_module_with_classes_declares_them(tmp_path):
    # Each of the core's modules has a .pxd: without one its classes compile to plain Python classes.
    for module in _native.CORE:
        assert (ROOT / (module.replace(".", "/") + ".pxd")).exists(), module


def test_an_undeclared_attribute_is_named(tmp_path):
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "base.pxd").write_text("cdef class Base:\n    cdef public object a\n")
    (tmp_path / "gateway" / "thing.pxd").write_text(
        "from gateway.base cimport Base\n\n\n"
        "cdef class Thing(Base):\n    cdef public int b, c  # counts\n    cdef readonly str d\n"
        "    cpdef run(self, int e)\n"
    )
    (tmp_path / "gateway" / "thing.py").write_text(
        "from dataclasses import dataclass\n\n\n"
        "class Thing(Base):\n"
        "    def __init__(me):\n"
        "        me.a = me.b = 1\n"
        "        me.c, me.d = 2, ''\n"
        "        me.new = 3\n"
        "    def run(self, e):\n"
        "        self.b += 1\n"
        "        self.extra: int = 0\n"
        "        object.__setattr__(self, 'late', 1)\n"
        "        def inner():\n"
        "            self.inside = 1\n\n\n"
        "class Plain:\n"
        "    def __init__(self):\n"
        "        self.anything = 1\n\n\n"
        "@dataclass\n"
        "class Thing2:\n"
        "    x: int\n"
    )
    (tmp_path / "gateway" / "thing.pxd").write_text(
        (tmp_path / "gateway" / "thing.pxd").read_text() + "\n\ncdef class Thing2:\n    cdef public int y\n"
    )
    assert undeclared(tmp_path, ["gateway.thing"]) == [
        "gateway/thing.py:11: Thing.extra", "gateway/thing.py:12: Thing.late", "gateway/thing.py:14: Thing.inside",
        "gateway/thing.py:24: Thing2.x", "gateway/thing.py:8: Thing.new",
    ]
