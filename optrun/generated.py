"""Compiled forms of math that optrun states once, in Python: numba compiles the same function numpy runs
(an optimizer's rule, an activation) into a loop of a small module that optrun writes and imports.

A module is written once to ``cache_dir()``, under a name that carries a hash of its source and of the
file that defines the math, and numba caches what it compiles beside it: a later process loads it in a
fraction of a second, and an edit to the math makes a new module, compiled afresh, where numba alone
would keep running what it compiled before (its cache does not look at the functions a function calls).

Imported by ``optrun.optim.kernels`` and ``optrun.compiled_epoch``; numba itself only when a module is
compiled.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import os
import re
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

CACHE_ENV = "OPTRUN_CACHE"
"""The environment variable that moves optrun's cache (the compiled modules)."""


class CompileError(Exception):
    """What numba or the math's own module raised while a module was compiled, in one line."""


def cache_dir() -> Path:
    """Where the modules are written: ``$OPTRUN_CACHE/kernels``, else ``$XDG_CACHE_HOME/optrun/kernels``,
    else ``~/.cache/optrun/kernels``."""
    if root := os.environ.get(CACHE_ENV):
        return Path(root) / "kernels"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "optrun" / "kernels"


def helpers_of(fn: types.FunctionType) -> dict[str, types.FunctionType]:
    """The plain functions of its own module that ``fn`` calls, by the names it calls them (a helper two rules
    share), which ``jitted`` compiles with it."""
    return {
        name: value
        for name in fn.__code__.co_names
        if isinstance(value := fn.__globals__.get(name), types.FunctionType)
        and value.__module__ == fn.__module__
        and value is not fn
    }


def jitted(fn: types.FunctionType) -> Any:
    """numba's compiled ``fn``, where every helper it calls (``helpers_of``) is compiled too."""
    from numba import njit

    helpers = {name: jitted(helper) for name, helper in helpers_of(fn).items()}
    if helpers:
        globals_ = {**fn.__globals__, **helpers}
        fn = types.FunctionType(fn.__code__, globals_, fn.__name__, fn.__defaults__, fn.__closure__)
    return njit(error_model="numpy", inline="always")(fn)  # inlined where called: the loop around it vectorizes


def file_of(obj: Any) -> bytes:
    """The text of the file that defines ``obj`` (a class: its math and the helpers it calls)."""
    try:
        return Path(inspect.getfile(obj)).read_bytes()
    except (OSError, TypeError):
        return inspect.getsource(obj).encode()


def load(prefix: str, source: str, depends_on: bytes) -> Any:
    """The module of ``source``, written to ``cache_dir()`` (once) and imported (once per process), its name
    ``prefix`` and a hash of ``source``, ``depends_on`` (the text its math comes from) and this file;
    CompileError, in one line, for whatever compiling it raises."""
    digest = hashlib.sha256(source.encode() + depends_on + Path(__file__).read_bytes()).hexdigest()[:20]
    try:
        return _import(_write(f"optrun_{prefix}_{digest}", source))
    except CompileError:
        raise
    except Exception as exc:  # numba's typing and lowering errors, and whatever the math's module raises
        raise CompileError(_reason(exc)) from exc


def _reason(exc: Exception) -> str:
    """An error in one line: numba's own reason (its first line that is not "Failed in nopython mode
    pipeline") and the file and line of the math it concerns, where it names them."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # numba colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    reason = next((line for line in lines if not line.startswith("Failed in")), lines[0])
    where = next((m for line in lines if (m := re.match(r'File "(.+)", line (\d+)', line))), None)
    return f"{type(exc).__name__}: {reason}" + (f" ({Path(where[1]).name}, line {where[2]})" if where else "")


@functools.cache
def _import(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BaseException:
        del sys.modules[path.stem]
        raise
    return module


def _write(name: str, source: str) -> Path:
    """The module's file in ``cache_dir()`` (written once, atomically); in a temporary folder of this user's
    where the cache cannot be written."""
    for folder in (cache_dir(), Path(tempfile.gettempdir()) / f"optrun-kernels-{os.getuid()}"):
        path = folder / f"{name}.py"
        try:
            if not path.exists():
                folder.mkdir(parents=True, exist_ok=True)
                partial = folder / f".{name}.{os.getpid()}.tmp"
                partial.write_text(source, encoding="utf-8")
                os.replace(partial, path)
            return path
        except OSError:
            continue
    raise CompileError(f"cannot write a compiled module to {cache_dir()} (set {CACHE_ENV} to a writable folder)")
