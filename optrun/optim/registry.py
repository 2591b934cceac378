"""Which optimizer a name means: a built-in (``adam``), or a class in the user's own Python file
(``my_rules.py:Lion``) or module (``package.module:Class``).

A built-in is one line of ``BUILT_IN``. A file is imported once per process under a module name made from
its path, so that parallel workers and Dask, which import it again by the same absolute path, find the
same class; a relative path is relative to the config that names it (``optrun.config`` makes it
absolute).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optrun.optim.base import Optimizer

BUILT_IN = {
    "sgd": "optrun.optim.momentum:SGD",
    "momentum": "optrun.optim.momentum:Momentum",
    "nesterov": "optrun.optim.momentum:Nesterov",
    "adagrad": "optrun.optim.adaptive:AdaGrad",
    "rmsprop": "optrun.optim.adaptive:RMSprop",
    "adam": "optrun.optim.adaptive:Adam",
    "adamw": "optrun.optim.adaptive:AdamW",
    "nadam": "optrun.optim.adaptive:NAdam",
    "lion": "optrun.optim.lion:Lion",
}
"""Every built-in optimizer: its name in a config, and where its class is."""


class NotAnOptimizer(ValueError):
    """A name that does not lead to an optimizer class; the message is one line for the user."""


def is_reference(name: str) -> bool:
    """Whether ``name`` names a class in a file or module (``where:Class``) rather than a built-in."""
    return ":" in name


def split_reference(name: str) -> tuple[str, str]:
    """``'my_rules.py:Lion'`` -> ('my_rules.py', 'Lion')."""
    location, _, qualname = name.rpartition(":")
    return location, qualname


def is_file(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def absolute(name: str, base: Path) -> str:
    """``name`` with a relative file path made absolute from ``base`` (a config's folder)."""
    if not is_reference(name):
        return name
    location, qualname = split_reference(name)
    if not is_file(location) or Path(location).is_absolute():
        return name
    return f"{(base / location).resolve()}:{qualname}"


SOURCE = "__optrun_source__"
"""The attribute of a user's module that holds the bytes it was run from: its kernels and its ``source``
hash come from them, not from the file as it may be now (edited while a process runs)."""


@functools.cache
def _import_file(path: str) -> Any:
    file = Path(path)
    try:
        source = file.read_bytes()
    except FileNotFoundError:
        raise NotAnOptimizer(f"no such file: {path}") from None
    except OSError as exc:
        raise NotAnOptimizer(f"{path}: cannot read it: {exc.strerror or exc}") from None
    name = f"optrun_user_{file.stem}_{hashlib.sha256(path.encode()).hexdigest()[:10]}"
    module = types.ModuleType(name)
    module.__file__ = path
    setattr(module, SOURCE, source)
    sys.modules[name] = module
    sys.path.insert(0, str(file.parent))  # as Python runs a script: the modules beside it import
    try:
        exec(compile(source, path, "exec"), module.__dict__)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise NotAnOptimizer(f"{path} does not import: {_describe(exc)}") from None
    finally:
        sys.path.remove(str(file.parent))
    return module


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _module(location: str) -> Any:
    if is_file(location):
        return _import_file(str(Path(location).resolve()))
    if not all(part.isidentifier() for part in location.split(".")):
        what = "a directory" if Path(location).is_dir() else "not a module name"
        raise NotAnOptimizer(f"{location}: {what}; give a Python file (my_rules.py) or a module (package.module)")
    try:
        return importlib.import_module(location)
    except ModuleNotFoundError as exc:
        if exc.name and location.startswith(exc.name):
            raise NotAnOptimizer(f"no module named '{location}' (a file is named with its .py)") from None
        raise NotAnOptimizer(f"module {location} does not import: {_describe(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise NotAnOptimizer(f"module {location} does not import: {_describe(exc)}") from None


def load_class(location: str, qualname: str) -> type[Optimizer]:
    """The optimizer class ``qualname`` of the module or Python file ``location``, checked to be one."""
    module = _module(location)
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is None:
        own = _own_optimizers(module)
        defines = f"; it defines {', '.join(own)}" if own else "; it defines no optimizer class"
        raise NotAnOptimizer(f"{location} has no '{qualname}'{defines}")
    if not _is_optimizer(found):
        what = short_name(f"{location}:{qualname}")
        raise NotAnOptimizer(f"{what} is not an optimizer: a subclass of optrun.Optimizer")
    if problem := found.problem():
        raise NotAnOptimizer(f"{short_name(f'{location}:{qualname}')}: {problem}")
    return found


def _own_optimizers(module: Any) -> list[str]:
    """The names of the optimizer classes ``module`` defines (not those it imports)."""
    return [n for n, v in vars(module).items() if _is_optimizer(v) and v.__module__ == module.__name__]


def _is_optimizer(value: Any) -> bool:
    from optrun.optim.base import Optimizer

    return inspect.isclass(value) and issubclass(value, Optimizer) and value is not Optimizer


def optimizer_class(name: str) -> type[Optimizer]:
    """The optimizer class a config's ``name`` means; raises NotAnOptimizer with a line for the user."""
    if is_reference(name):
        return load_class(*split_reference(name))
    if name not in BUILT_IN:
        raise NotAnOptimizer(
            f"unknown name '{name}'; choose from: {', '.join(BUILT_IN)}, or your own class as path/to/file.py:Class"
        )
    return load_class(*split_reference(BUILT_IN[name]))


def source_of(cls: type) -> bytes:
    """The text of the file that defines ``cls``, as this process ran it."""
    return getattr(sys.modules.get(cls.__module__), SOURCE, None) or Path(inspect.getfile(cls)).read_bytes()


def location_of(cls: type) -> str:
    """Where ``load_class`` finds ``cls`` again, in this process or another: its file's path where it came
    from a user's file, else its module's name."""
    if cls.__module__.startswith("optrun_user_"):
        return inspect.getfile(cls)
    return cls.__module__


def short_name(name: str) -> str:
    """A config's optimizer name as tables show it: a file by its name alone (``my_rules.py:Lion``)."""
    if not is_reference(name):
        return name
    where, qualname = split_reference(name)
    return f"{Path(where).name}:{qualname}" if is_file(where) else name


def classes_in(source: str) -> tuple[dict[str, type[Optimizer]], list[str]]:
    """The optimizers a user's ``source`` defines, by the names a config gives them: every optimizer class of
    a Python file or module (``my_rules.py``: ``my_rules.py:Lion`` ...), or the one class it names
    (``my_rules.py:Lion``); and what is wrong with those that are not valid optimizers. Raises
    NotAnOptimizer where the source does not import, or defines no optimizer class."""
    if is_reference(source):
        return {source: load_class(*split_reference(source))}, []
    module = _module(source)
    names = _own_optimizers(module)
    if not names:
        raise NotAnOptimizer(f"{source} defines no optimizer class (a subclass of optrun.Optimizer)")
    found, problems = {}, []
    for name in names:
        try:
            found[f"{source}:{name}"] = load_class(source, name)
        except NotAnOptimizer as exc:
            problems.append(str(exc))
    return found, problems


def source_digest(name: str, recorded: Any = None) -> str | None:
    """The SHA-256 of the file that defines the class ``name`` means, for a class from a user's file or module
    (None for a built-in: optrun's version records it); where ``recorded`` (a run's config.yaml holds it), it
    must be the same: a file edited since a run began would change the rule halfway through its seeds."""
    if not is_reference(name):
        return None
    digest = hashlib.sha256(source_of(optimizer_class(name))).hexdigest()
    if recorded is not None and recorded != digest:
        where = split_reference(name)[0]
        raise NotAnOptimizer(
            f"{where} has changed since this config recorded it (SHA-256 {str(recorded)[:12]}…, now {digest[:12]}…); "
            "restore the file, or start a new run"
        )
    return digest
