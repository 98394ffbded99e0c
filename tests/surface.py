"""Checking a package's public surface against each module's ``__all__``, both ways.

The rule, for every public module (no part of its dotted name starts with ``_``):

- it has ``__all__``, and every name there exists in the module;
- every public name the module binds at top level by ``def``, ``class`` or assignment is in
  ``__all__``, except loggers and type variables, which are plumbing, not API;
- a package ``__init__`` also lists every public name it imports from its own submodules (that
  is what re-exporting means); a plain module may list an imported name (an explicit
  re-export) but need not;
- dunder names (``__version__``) may be listed; ``__all__`` holds no other ``_`` name.

Bindings are read from the source, not the module's namespace: ``from __future__ import
annotations`` binds no name here, and names imported only under ``if TYPE_CHECKING:`` are not
bound at all.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, ParamSpec, TypeVar, TypeVarTuple

__all__ = ["Bindings", "all_modules", "public_modules", "surface_problems"]

# Values that a module binds publicly without them being part of its API.
_PLUMBING: tuple[type, ...] = (logging.Logger, TypeVar, ParamSpec, TypeVarTuple)


def all_modules(package: str) -> list[str]:
    """Dotted names of ``package`` and every module under it, private ones too.

    ``__main__`` modules are left out: importing one runs the program.
    """
    root = importlib.import_module(package)
    names = [package]
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.rpartition(".")[2] != "__main__":
            names.append(info.name)
    return sorted(names)


def public_modules(package: str) -> list[str]:
    """Dotted names of ``package`` and every module under it whose name has no ``_`` part."""
    return [
        name
        for name in all_modules(package)
        if not any(part.startswith("_") for part in name.split("."))
    ]


@dataclass
class Bindings:
    """Public top-level names of a module's source, by how they are bound.

    Attributes:
        package: The dotted name of the package the module belongs to (itself, for a package).
        defined: Names bound by ``def``, ``class`` or assignment.
        imported: Names imported from anywhere.
        own: Those of ``imported`` that come from ``package`` or a module under it.
        has_all: Whether the module assigns ``__all__``.
    """

    package: str
    defined: set[str] = field(default_factory=set)
    imported: set[str] = field(default_factory=set)
    own: set[str] = field(default_factory=set)
    has_all: bool = False

    @classmethod
    def of(cls, source: str, package: str) -> Bindings:
        """The bindings of a module's source text; ``package`` as in the attribute."""
        found = cls(package)
        found._visit(ast.parse(source).body)
        found.has_all = "__all__" in found.defined
        for names in (found.defined, found.imported, found.own):
            names -= {n for n in names if n.startswith("_")}
        return found

    def _visit(self, body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if not _is_type_checking(node.test):  # those names do not exist at run time
                    self._visit(node.body)
                self._visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody):
                    self._visit(block)
                for handler in node.handlers:
                    self._visit(handler.body)
            elif isinstance(node, ast.ImportFrom):
                if node.module == "__future__":
                    continue
                names = {a.asname or a.name for a in node.names}
                self.imported |= names
                source = node.module or ""
                if node.level or source == self.package or source.startswith(f"{self.package}."):
                    self.own |= names
            elif isinstance(node, ast.Import):
                pass  # binds a module object: never a re-export
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defined.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self.defined.update(_names(target))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _names(element)]
    return []  # attribute or subscript: binds no module name


def surface_problems(name: str) -> list[str]:
    """Every way module ``name`` breaks the rule above, as readable lines (empty: it keeps it)."""
    module = importlib.import_module(name)
    package = name if _is_package(module) else name.rpartition(".")[0]
    bindings = Bindings.of(inspect.getsource(module), package)
    if not bindings.has_all:
        return [f"{name} has no __all__"]
    if not module.__all__:
        return [f"{name}.__all__ is empty"]
    listed: list[str] = list(module.__all__)
    problems = [
        f"{name}.__all__ lists {m!r} twice" for m in sorted(set(listed)) if listed.count(m) > 1
    ]
    for member in sorted(set(listed)):
        if not hasattr(module, member):
            problems.append(f"{name}.__all__ lists {member!r}, which the module does not have")
        elif member.startswith("_") and not (member.startswith("__") and member.endswith("__")):
            problems.append(f"{name}.__all__ lists the private name {member!r}")
    required = {n for n in bindings.defined if not _is_plumbing(module, n)}
    if _is_package(module):
        required |= {n for n in bindings.own if not isinstance(getattr(module, n), ModuleType)}
    for member in sorted(required - set(listed)):
        problems.append(
            f"{name}: public name {member!r} is not in __all__ (add it, or name it _{member})"
        )
    return problems


def _is_plumbing(module: ModuleType, name: str) -> bool:
    value: Any = getattr(module, name, None)
    return isinstance(value, _PLUMBING)


def _is_package(module: ModuleType) -> bool:
    return hasattr(module, "__path__")
