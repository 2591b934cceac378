"""Configs: read YAML, apply ``--set`` overrides, validate into a ``Config``.

This is the only module that knows YAML. Every section's schema lives beside the
code that uses it (``optrun.data``, ``optrun.models``, ``optrun.optim``); this
module composes them and turns every mistake into one ``ConfigError`` line that
names the file, the dotted key, what is wrong and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Hashable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, Field, PlainValidator, model_validator
from pydantic_core import PydanticCustomError

from optrun.data import DatasetSpec
from optrun.models import MLPSpec, ModelSpec
from optrun.objectives import ObjectiveSpec, theory
from optrun.optim import OPTIMIZERS, REFERENCE_OPTIMIZERS, OptimizerSpec, parse_optimizer_spec
from optrun.optim.registry import absolute
from optrun.profiles import ProfileSpec
from optrun.schema import (
    INTERNAL,
    ConfigError,
    NonNegativeInt,
    PositiveInt,
    Section,
    describe,
    integral,
    interval,
    validate,
)
from optrun.search import Range, Space, TuneSpec, check_budget, dimension

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise PydanticCustomError(
            "name",
            "must start with a letter or digit and contain only letters, digits, '.', '_' and '-', got '{got}'",
            {"got": value},
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]  # safe as a directory name

FILE_SUFFIXES = (".yaml", ".json", ".csv", ".png", ".svg", ".txt", ".html", ".npz")
"""Endings of the files a compare directory holds beside its labels' folders (config.yaml, summary.json,
comparison.csv, curves.png ...): a label may not end in one, so that its folder can never take their place."""


def _check_label(value: str) -> str:
    if value.lower().endswith(FILE_SUFFIXES):
        raise PydanticCustomError(
            "label",
            "must not end in {suffixes} (the compare directory's own files are named so), got '{got}'",
            {"suffixes": ", ".join(FILE_SUFFIXES), "got": value},
        )
    return value


Label = Annotated[Name, AfterValidator(_check_label)]  # a label of a comparison: a folder beside its files


class TrainSpec(Section):
    """The training loop: epochs over the train split in shuffled minibatches, or steps on an objective."""

    epochs: PositiveInt = 20
    batch_size: PositiveInt = 32
    max_samples: PositiveInt | None = None  # use at most this many train and test samples (None: all)
    steps: PositiveInt = 500  # objectives only: optimizer steps from the start point
    divergence_factor: Annotated[float, interval(1, lo_open=True)] | None = None  # diverged above factor × loss 0


NETWORK_TRAIN_KEYS = ("epochs", "batch_size", "max_samples")


THEORY = "theory"  # learning_rate: theory / mu: theory, on a quadratic objective


def _theory_problem(spec: Any, objective: Any) -> str | None:
    """Why the 'theory' values of an optimizer spec cannot be resolved (None: they can, or there are none)."""
    if not isinstance(spec, Mapping) or THEORY not in (spec.get("learning_rate"), spec.get("mu")):
        return None
    if not isinstance(objective, Mapping) or objective.get("name") != "quadratic":
        return "'theory' needs a quadratic objective: the settings come from its L and μ"
    if spec.get("name") not in ("sgd", "momentum", "nesterov"):
        return f"there is no theory for {spec.get('name')}; it exists for sgd, momentum and nesterov"
    if spec.get("name") == "sgd" and "mu" in spec:
        return "sgd has no mu"
    return None


def _with_theory(spec: Any, objective: Any) -> Any:
    """``spec`` with 'theory' replaced by the tuned values for the quadratic ``objective`` (when possible)."""
    if not isinstance(spec, Mapping) or _theory_problem(spec, objective) is not None:
        return spec  # the spec's own validation reports what is wrong with it
    if THEORY not in (spec.get("learning_rate"), spec.get("mu")):
        return spec
    dim, kappa = objective.get("dim", 2), objective.get("condition_number", 10.0)
    if not isinstance(kappa, int | float) or isinstance(kappa, bool) or kappa < 1:
        return spec  # the objective's own validation reports it
    tuned = theory(spec["name"], float(kappa) if dim != 1 else 1.0, 1.0, bool(spec.get("nesterov", False)))
    return {**spec, **{k: tuned[k] for k in ("learning_rate", "mu") if spec.get(k) == THEORY}}


def _problem(key: str, message: str) -> PydanticCustomError:
    return PydanticCustomError("problem", message, {"key": key})


class _Experiment(Section):
    """What every config shares: the problem, the network and how long to train it."""

    name: Name = "run"
    seed: NonNegativeInt = 0
    dataset: DatasetSpec | None = None  # a network trained on data ...
    objective: ObjectiveSpec | None = None  # ... or a test function (optrun.objectives)
    model: ModelSpec = MLPSpec(type="mlp")
    train: TrainSpec = TrainSpec()

    @classmethod
    def fill_defaults(cls, data: Any) -> Any:
        """A model without a type is an MLP."""
        if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping) and "type" not in data["model"]:
            return {**data, "model": {"type": "mlp", **data["model"]}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _keys_fit_the_problem(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        train = data.get("train") if isinstance(data.get("train"), Mapping) else {}
        if data.get("objective") is not None and data.get("dataset") is not None:
            raise _problem("objective", "give either 'dataset' (a network) or 'objective' (a test function), not both")
        if data.get("objective") is not None:
            if "model" in data:
                raise _problem("model", "a test function has no model; leave 'model' out with 'objective'")
            if key := next((k for k in NETWORK_TRAIN_KEYS if k in train), None):
                raise _problem(f"train.{key}", "an objective runs for 'train.steps', not epochs of minibatches")
        if data.get("dataset") is not None and "steps" in train:
            raise _problem("train.steps", "a network trains for 'train.epochs'; steps are for an 'objective'")
        return data

    @model_validator(mode="after")
    def _one_problem(self) -> _Experiment:
        if self.dataset is None and self.objective is None:
            raise _problem("dataset", "is required (or 'objective' for a test function)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Every key with its value, defaults filled in: what ``config.yaml`` in a run directory holds."""
        if self.objective is not None:
            return self.model_dump(
                mode="json", exclude={"dataset": True, "model": True, "train": set(NETWORK_TRAIN_KEYS)}
            )
        return self.model_dump(mode="json", exclude={"objective": True, "train": {"steps"}})


class Config(_Experiment):
    """A whole experiment: what to train, on what, with which optimizer."""

    optimizer: OptimizerSpec

    @classmethod
    def fill_defaults(cls, data: Any) -> Any:
        """'theory' learning rates and momenta, from a quadratic objective (``optrun.objectives.theory``)."""
        data = super().fill_defaults(data)
        if isinstance(data, Mapping) and isinstance(data.get("optimizer"), Mapping):
            return {**data, "optimizer": _with_theory(data["optimizer"], data.get("objective"))}
        return data

    @model_validator(mode="before")
    @classmethod
    def _theory_possible(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and (why := _theory_problem(data.get("optimizer"), data.get("objective"))):
            raise _problem("optimizer", why)
        return data


def _check_seeds(value: Any) -> int | list[int]:
    """A count of seeds (>= 1) or a non-empty list of distinct seeds (>= 0)."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    whole = [integral(v) for v in value] if isinstance(value, list) else integral(value)
    if is_int(whole) and whole >= 1:
        return whole
    if isinstance(whole, list) and whole and all(is_int(v) and v >= 0 for v in whole) and len(set(whole)) == len(whole):
        return whole
    raise PydanticCustomError(
        "seeds",
        "must be a number of seeds (>= 1) or a list of distinct seeds (>= 0), got {got}",
        {"got": describe(value)},
    )


Seeds = Annotated[int | list[int], PlainValidator(_check_seeds)]


def _named_by_label(label: Any, spec: Any) -> Any:
    """``adam: {learning_rate: 0.001}`` or ``adam:`` alone: a spec whose label is an optimizer's name."""
    if label in OPTIMIZERS and spec is None:
        return {"name": label}
    if label in OPTIMIZERS and isinstance(spec, Mapping) and "name" not in spec:
        return {"name": label, **spec}
    return spec


def _specs_named(optimizers: Any) -> None:
    """``_problem`` for a label left empty (``sgdd:``) that names no optimizer: only an optimizer's name may stand
    for its spec."""
    if not isinstance(optimizers, Mapping):
        return
    for label, spec in optimizers.items():
        if spec is None and label not in OPTIMIZERS:
            close = difflib.get_close_matches(str(label), list(OPTIMIZERS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _problem(
                f"optimizers.{label}",
                f"'{label}' is not an optimizer's name{hint}, so it needs a spec: {{name: OPTIMIZER, ...}}",
            )


def _reference_optimizers() -> dict[str, Any]:
    return {name: OPTIMIZERS[name].Spec(name=name) for name in REFERENCE_OPTIMIZERS}


COMPARE_KEYS = ("optimizers", "seeds", "target_accuracy")  # the keys that make a config a compare config


class CompareConfig(_Experiment):
    """Several optimizers, each trained once per seed on the same problem.

    ``optimizers`` maps a label (a run's directory and legend name) to an
    optimizer spec; without it, the six reference optimizers at their defaults.
    A spec's ``name`` defaults to its label, so ``adam: {learning_rate: 0.001}``
    works. ``seeds: N`` means seeds ``seed, seed+1, ..., seed+N-1``.
    """

    optimizer: OptimizerSpec | None = None  # a train config's optimizer: accepted, but not compared
    optimizers: Annotated[dict[Label, OptimizerSpec], Field(min_length=1, default_factory=_reference_optimizers)]
    seeds: Seeds = 1
    target_accuracy: Annotated[float, interval(0, 1, lo_open=True)] | None = None  # None: 95% of the best

    @classmethod
    def fill_defaults(cls, data: Any) -> Any:
        """An optimizer spec labelled with an optimizer's name is that optimizer: ``adam: {learning_rate: 0.001}``."""
        data = super().fill_defaults(data)
        if isinstance(data, Mapping) and isinstance(data.get("optimizers"), Mapping):
            objective = data.get("objective")
            specs = {
                label: _with_theory(_named_by_label(label, spec), objective)
                for label, spec in data["optimizers"].items()
            }
            return {**data, "optimizers": specs}
        return data

    @model_validator(mode="before")
    @classmethod
    def _theory_possible(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("optimizers"), Mapping):
            for label, spec in data["optimizers"].items():
                if why := _theory_problem(_named_by_label(label, spec), data.get("objective")):
                    raise _problem(f"optimizers.{label}", why)
        return data

    @model_validator(mode="before")
    @classmethod
    def _labels_named(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            _specs_named(data.get("optimizers"))
        return data

    @model_validator(mode="before")
    @classmethod
    def _one_kind_of_optimizer(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "optimizers" in data and data.get("optimizer") is not None:
            raise PydanticCustomError(
                "both", "give either 'optimizer' (one) or 'optimizers' (labels), not both", {"key": "optimizer"}
            )
        return data

    @property
    def seed_list(self) -> list[int]:
        """The seeds every optimizer is trained with, in order."""
        if isinstance(self.seeds, int):
            return list(range(self.seed, self.seed + self.seeds))
        return list(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """The resolved compare config: seeds listed, ``optimizer`` left out (it is not compared)."""
        data = super().to_dict()
        data.pop("optimizer", None)
        return {**data, "seeds": self.seed_list}

    def run_config(self, label: str, seed: int) -> Config:
        """The train config of one run: this problem, optimizer ``label``, ``seed``; named by its label."""
        problem = {"objective": self.objective} if self.objective else {"dataset": self.dataset, "model": self.model}
        return Config(name=label, seed=seed, **problem, train=self.train, optimizer=self.optimizers[label])


TUNING_VALIDATION_FRACTION = 0.1  # dataset.validation_fraction where a tune config gives none


class TuneConfig(CompareConfig):
    """A comparison whose labels are first tuned (``optrun.tune``): the ``tune:`` section says how.

    Every trial trains on the training split less a validation split (``dataset.validation_fraction``, 0.1
    unless given) and is scored on that; the evaluation then trains each label's chosen setting on the
    ``seeds`` of the comparison, which differ from the tuning seeds (``tuning_seeds``).
    """

    tune: TuneSpec

    @classmethod
    def fill_defaults(cls, data: Any) -> Any:
        """A validation split where the dataset has none: the trials are scored on it."""
        data = super().fill_defaults(data)
        dataset = data.get("dataset") if isinstance(data, Mapping) else None
        if isinstance(dataset, Mapping) and dataset.get("validation_fraction") is None:
            return {**data, "dataset": {**dataset, "validation_fraction": TUNING_VALIDATION_FRACTION}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _a_network(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("objective") is not None:
            raise _problem("tune", "tunes a network on a dataset's validation split; an objective has none")
        return data

    @model_validator(mode="after")
    def _fresh_seeds(self) -> TuneConfig:
        if shared := sorted(set(self.tuning_seeds) & set(self.seed_list)):
            raise _problem(
                "tune.seeds",
                f"seed {shared[0]} is also an evaluation seed (seeds: {self.seed_list}); the chosen settings must "
                "be evaluated on seeds the tuning never saw",
            )
        return self

    @model_validator(mode="after")
    def _searchable(self) -> TuneConfig:
        for label, space in self.spaces.items():  # resolves and checks every label's space
            try:
                check_budget(space, self.tune.budget, self.tune.search)
            except ValueError as exc:
                also = " (every label's search has the same budget)" if len(self.spaces) > 1 else ""
                raise _problem("tune.budget", f"{label}: {exc}{also}") from None
        return self

    @property
    def tuning_seeds(self) -> list[int]:
        """The seeds each setting is trained with while tuning: ``tune.seeds``, else the seed after the last
        evaluation seed."""
        return self.tune.seeds or [max(self.seed_list) + 1]

    @functools.cached_property
    def spaces(self) -> dict[str, Space]:
        """Each label's search space: the ranges ``tune.space`` gives every label (a hyperparameter's name as the
        key), then its own (its label as the key). ``_problem`` names the first entry that does not apply."""
        space, labels = self.tune.space, self.optimizers
        if not space:
            raise _problem("tune.space", "is empty; give each label at least one hyperparameter to tune")
        shared = {k: v for k, v in space.items() if k not in labels}
        for name in shared:
            if not (owners := [label for label, spec in labels.items() if name in _tunable(spec)]):
                raise _problem(
                    f"tune.space.{name}",
                    f"is neither a label ({', '.join(labels)}) nor a hyperparameter of their optimizers",
                )
            if lacking := [label for label in labels if label not in owners]:
                raise _problem(
                    f"tune.space.{name}",
                    f"{lacking[0]} ({labels[lacking[0]].name}) has no hyperparameter {name}; give {name} under the "
                    f"labels that take it (tune.space.{owners[0]}.{name})",
                )
        spaces = {}
        for label, spec in labels.items():
            own = space.get(label, {})
            if isinstance(own, Mapping) and own.keys() & {"log", "linear"} and label in _tunable(spec):
                raise _problem(
                    f"tune.space.{label}",
                    f"{label} is a label here, so it maps that label's hyperparameters to ranges; to give "
                    f"{label} a range for every label, name the label otherwise",
                )
            if not isinstance(own, Mapping):
                raise _problem(
                    f"tune.space.{label}", f"must map {label}'s hyperparameters to ranges, got {describe(own)}"
                )
            entries = {k: (f"tune.space.{k}", v) for k, v in shared.items()}
            entries |= {k: (f"tune.space.{label}.{k}", v) for k, v in own.items()}
            if not entries:
                raise _problem(
                    "tune.space",
                    f"gives {label} nothing to tune; give it a range (tune.space.{label}.learning_rate: "
                    "{log: [0.0001, 0.1]}) or give one for every label",
                )
            spaces[label] = {
                name: _dimension(label, spec, name, where, value) for name, (where, value) in entries.items()
            }
        return spaces

    def trial_config(self, label: str, setting: Mapping[str, Any], seed: int) -> Config:
        """The train config of one trial: label ``label`` with ``setting`` applied, trained with ``seed``."""
        spec = {**self.optimizers[label].model_dump(), **setting}
        return Config(name=label, seed=seed, dataset=self.dataset, model=self.model, train=self.train, optimizer=spec)

    def evaluation(self, chosen: Mapping[str, Mapping[str, Any]]) -> CompareConfig:
        """The comparison of each label in ``chosen`` at its chosen setting, on the evaluation seeds."""
        data = self.to_dict()
        del data["tune"]
        data["name"] = f"{self.name[:94]}-tuned"  # its comparison, not the tuning: optrun compare tuned.yaml
        data["optimizers"] = {label: {**data["optimizers"][label], **setting} for label, setting in chosen.items()}
        return parse_config(data, f"{self.name}: the tuned comparison", CompareConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved tune config: the tuning seeds listed."""
        data = super().to_dict()
        return {**data, "tune": {**data["tune"], "seeds": self.tuning_seeds}}


class SuiteConfig(Section):
    """A benchmark suite (``optrun.suite``): the same labels on several problems, each compared (or tuned, then
    compared) as ``optrun compare`` (``optrun tune``) would, then scored across the problems by performance
    profiles (``optrun.profiles``).

    ``problems`` maps a problem's name (its folder in the suite directory) to a compare or tune config: a path
    to its file, or the config itself. Each problem keeps its dataset, model, training, seeds and target; the
    suite's ``optimizers`` replace its own, ``seeds`` (when given) its seeds, and ``tune`` (when given) tunes
    every problem that has no ``tune:`` section of its own.
    """

    name: Name = "suite"
    optimizers: Annotated[dict[Label, OptimizerSpec], Field(min_length=1, default_factory=_reference_optimizers)]
    seeds: Seeds | None = None
    tune: TuneSpec | None = None
    profile: ProfileSpec = ProfileSpec()
    problems: Annotated[dict[Label, Any], Field(min_length=1)]  # a path, or a config: checked by ``configs``

    @classmethod
    def fill_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("optimizers"), Mapping):
            return {**data, "optimizers": {k: _named_by_label(k, v) for k, v in data["optimizers"].items()}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _labels_named(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            _specs_named(data.get("optimizers"))
        return data

    @functools.cached_property
    def configs(self) -> dict[str, CompareConfig | TuneConfig]:
        """Each problem's config as the suite runs it: a TuneConfig where it is tuned. ConfigError names the
        problem's key (``problems.<name>.<key>: ...``)."""
        configs: dict[str, CompareConfig | TuneConfig] = {}
        for name in self.problems:
            data = {k: v for k, v in self._given(name).items() if k not in ("name", "optimizer", "optimizers")}
            data |= {"name": name, "optimizers": {k: v.model_dump(mode="json") for k, v in self.optimizers.items()}}
            if self.seeds is not None:
                data["seeds"] = self.seeds
            inherits = "tune" not in data and self.tune is not None and data.get("objective") is None
            if inherits:  # the suite's tuning, for a network (an objective has no validation split to tune on)
                data["tune"] = self.tune.model_dump(mode="json", exclude_none=True)
            if self.profile.measure == "seconds" and data.get("objective") is not None:
                raise ConfigError(
                    f"profile.measure: seconds cannot time problem {name}, an objective (its runs count steps, not "
                    "seconds); use measure: epochs, which times an objective in steps"
                )
            try:
                configs[name] = validate(TuneConfig if "tune" in data else CompareConfig, data, f"problems.{name}")
            except ConfigError as exc:
                where, _, problem = str(exc).partition(": ")
                if inherits and where.startswith(f"problems.{name}.tune"):  # the suite's tune: section
                    raise ConfigError(
                        f"{where.removeprefix(f'problems.{name}.')} (for problem {name}): {problem}"
                    ) from None
                raise
        return configs

    def _given(self, name: str) -> dict[str, Any]:
        """Problem ``name`` as the suite gives it: its file read, or its config; ConfigError otherwise."""
        given = self.problems[name]
        try:
            data = _read_config(given, ()) if isinstance(given, str) else given
        except ConfigError as exc:
            raise ConfigError(f"problems.{name}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"problems.{name}: must be the path of a compare or tune config, or the config itself (a "
                f"mapping), got {describe(data)}"
            )
        if "problems" in data:
            raise ConfigError(f"problems.{name}: is a suite; a suite's problem is a compare or tune config")
        return data

    @functools.cached_property
    def replaced(self) -> dict[str, list[str]]:
        """The problems whose own config names other labels (``optimizers:``, or one ``optimizer:``) than the
        suite's, which replace them: by problem, its own labels."""
        out = {}
        for name in self.problems:
            data = self._given(name)
            one = data.get("optimizer")
            own = list(data.get("optimizers") or {}) or ([str(one.get("name"))] if isinstance(one, Mapping) else [])
            if own and own != list(self.optimizers):
                out[name] = own
        return out

    def to_dict(self) -> dict[str, Any]:
        """The resolved suite: every problem's resolved config in place of its file."""
        data = self.model_dump(mode="json", exclude_none=True)
        return {**data, "problems": {name: config.to_dict() for name, config in self.configs.items()}}


def _tunable(spec: Any) -> list[str]:
    """The hyperparameters of an optimizer spec a tuning may set."""
    return [k for k, f in type(spec).model_fields.items() if k != "name" and f.json_schema_extra != INTERNAL]


def _dimension(label: str, spec: Any, name: str, where: str, value: Any) -> Any:
    """``value`` as a Dimension of hyperparameter ``name`` of ``label`` (its optimizer spec: ``spec``), every value
    it can take checked against the spec; ``_problem`` at ``where`` otherwise."""
    if name not in (keys := _tunable(spec)):
        raise _problem(where, f"{label} ({spec.name}) has no hyperparameter {name}; it takes: {', '.join(keys)}")
    try:
        found = dimension(value)
    except ValueError as exc:
        raise _problem(where, str(exc)) from None
    ends = (found.low, found.high) if isinstance(found, Range) else found.values
    for end in ends:
        try:
            parse_optimizer_spec({**spec.model_dump(), name: end})
        except ConfigError as exc:
            raise _problem(where, str(exc).partition(": ")[2]) from None
    return found


AnyConfig = TypeVar("AnyConfig", Config, CompareConfig, TuneConfig, SuiteConfig)


class _Loader(yaml.SafeLoader):
    """Safe YAML that reads 1e-3 as a number (as YAML 1.2 does) and rejects duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}'", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or exc.context or "invalid YAML"
        return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {problem}"
    return f"YAML syntax error: {exc}"


def read_yaml(path: str | Path) -> Any:
    """The parsed contents of a YAML file, or ConfigError naming the file and the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_describe_yaml_error(exc)}") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'optimizer.mu=0.95'`` -> (['optimizer', 'mu'], 0.95); the value is read as a YAML scalar."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ConfigError(f"--set {item}: expected KEY=VALUE with a dotted KEY, e.g. optimizer.mu=0.95")
    try:
        value = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item}: cannot read the value: {_describe_yaml_error(exc)}") from None
    return [p.strip() for p in parts], value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``KEY=VALUE`` set, creating mappings along the path."""
    out = copy.deepcopy(data)
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"--set {item}: {where} is not a mapping, so it has no key '{parts[i + 1]}'")
            node = child
        node[parts[-1]] = value
    return out


def is_compare(data: Any) -> bool:
    """Whether a config mapping is for ``optrun compare``: it has compare keys, or no single optimizer."""
    return isinstance(data, Mapping) and (any(k in data for k in COMPARE_KEYS) or "optimizer" not in data)


def parse_config(data: Any, source: str = "config", schema: type[AnyConfig] = Config) -> AnyConfig:
    """Validate a config mapping as ``schema``; errors read ``<source>: <dotted.key>: <problem>``."""
    if data is None:
        needs = "'problems'" if schema is SuiteConfig else "'dataset' and 'optimizer'"
        raise ConfigError(f"{source}: the config is empty; it needs at least {needs}")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, got {kind}")
    if schema is not SuiteConfig and "problems" in data:
        raise ConfigError(f"{source}: problems: this is a suite config; run it with 'optrun suite {source}'")
    if schema is SuiteConfig and "problems" not in data:
        if close := difflib.get_close_matches("problems", [str(k) for k in data], n=1, cutoff=0.75):
            raise ConfigError(f"{source}: {close[0]}: unknown key; did you mean 'problems'?")
        if "dataset" in data or "objective" in data:  # one problem: a tuning's, a comparison's or a run's
            command = "tune" if "tune" in data else "compare" if is_compare(data) else "train"
            raise ConfigError(
                f"{source}: problems: this is a {command} config; run it with 'optrun {command} {source}'"
            )
        raise ConfigError(
            f"{source}: problems: is required: a suite names its problems, each a compare or tune config (a path to "
            "its file, or the config itself); see docs/comparing.md, 'Suites'"
        )
    if schema not in (TuneConfig, SuiteConfig) and "tune" in data:
        raise ConfigError(f"{source}: tune: this is a tune config; run it with 'optrun tune {source}'")
    if schema is TuneConfig and "tune" not in data:
        raise ConfigError(
            f"{source}: tune: is required: optrun tune needs a tune: section, at least its space: (the ranges to "
            "search); see docs/comparing.md, 'Tuning'"
        )
    if schema is Config and (key := next((k for k in COMPARE_KEYS if k in data), None)):
        raise ConfigError(f"{source}: {key}: this is a compare config; run it with 'optrun compare {source}'")
    try:
        config = validate(schema, data)
        if isinstance(config, SuiteConfig):
            config.configs  # noqa: B018 (every problem resolved and checked now, its errors named by this source)
        return config
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def default_name(path: str | Path) -> str:
    """The file's stem, made safe for a directory name."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-._")
    return name[:100] or "run"


def _read_config(path: str | Path, overrides: Iterable[str]) -> Any:
    data = read_yaml(path)
    if isinstance(data, dict):
        data = apply_overrides(data, overrides)
        data.setdefault("name", default_name(path))
        data = with_absolute_paths(data, Path(path).resolve().parent)
    return data


def with_absolute_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``data`` with the optimizers named by a relative file path (``my_rules.py:Lion``) named by its absolute
    path from ``base``, the config's folder, and the dataset's ``path`` likewise: a run directory's config.yaml
    then names the same files from anywhere, as resume, parallel workers and Dask read it."""

    def fixed(spec: Any) -> Any:
        if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            return {**spec, "name": absolute(spec["name"], base)}
        return spec

    data = {**data, "optimizer": fixed(data["optimizer"])} if "optimizer" in data else data
    if isinstance(data.get("optimizers"), Mapping):
        data = {**data, "optimizers": {label: fixed(spec) for label, spec in data["optimizers"].items()}}
    dataset = data.get("dataset")
    if isinstance(dataset, Mapping) and isinstance(dataset.get("path"), str):
        data = {**data, "dataset": {**dataset, "path": str(base / Path(dataset["path"]).expanduser())}}
    if isinstance(data.get("problems"), Mapping):  # a suite's: its problems' files, and theirs
        problems = {
            name: str(base / Path(p).expanduser())
            if isinstance(p, str)
            else with_absolute_paths(p, base)
            if isinstance(p, dict)
            else p
            for name, p in data["problems"].items()
        }
        data = {**data, "problems": problems}
    return data


def load_config(path: str | Path, overrides: Iterable[str] = (), schema: type[AnyConfig] = Config) -> AnyConfig:
    """Read, override and validate the config at ``path`` as ``schema`` (Config or CompareConfig)."""
    return parse_config(_read_config(path, overrides), str(path), schema)


def load_any_config(path: str | Path, overrides: Iterable[str] = ()) -> Config | CompareConfig | SuiteConfig:
    """The config at ``path`` as a SuiteConfig where it has ``problems:``, a TuneConfig where it has a ``tune:``
    section, a CompareConfig where it is one (``is_compare``), else as a Config."""
    data = _read_config(path, overrides)
    return parse_config(data, str(path), schema_of(data))


def schema_of(data: Any) -> type[Config] | type[CompareConfig] | type[SuiteConfig]:
    """The kind of config a mapping is: a suite's (``problems:``), a tuning's (``tune:``), a comparison's
    (``is_compare``) or a run's."""
    if isinstance(data, Mapping) and "problems" in data:
        return SuiteConfig
    if isinstance(data, Mapping) and "tune" in data:
        return TuneConfig
    return CompareConfig if is_compare(data) else Config


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML for a resolved config, keys in schema order."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, allow_unicode=True)


SMOKE_SAMPLES = 256
SMOKE_STEPS = 20


def smoke(config: AnyConfig) -> AnyConfig:
    """The config cut down for a smoke test: one epoch on at most 256 train and 256 test samples (as many as
    there are classes, where there are more), or on an objective at most 20 steps; a tuning tries two random
    settings per label on one tuning seed and evaluates them on one seed; a suite runs each problem's smoke
    test on one seed."""
    if isinstance(config, SuiteConfig):  # every problem's smoke test, in place of the problem
        problems = {
            name: smoke(p).model_copy(update={"seeds": p.seed_list[:1]}).to_dict() for name, p in config.configs.items()
        }
        data = config.model_dump(mode="json", exclude_none=True, exclude={"seeds", "tune"})
        return parse_config({**data, "problems": problems}, config.name, SuiteConfig)
    if config.objective is not None:
        update = {"steps": min(config.train.steps, SMOKE_STEPS)}
    else:  # and never fewer samples than classes, so that each split keeps one of each
        samples = max(SMOKE_SAMPLES, config.dataset.size[2])
        update = {"epochs": 1, "max_samples": min(config.train.max_samples or samples, samples)}
    config = config.model_copy(update={"train": config.train.model_copy(update=update)})
    if isinstance(config, TuneConfig):  # two random settings per label, each on one seed, and one evaluation seed
        tune = config.tune.model_copy(update={"budget": 2, "search": "random", "seeds": config.tuning_seeds[:1]})
        config = config.model_copy(update={"tune": tune, "seeds": config.seed_list[:1]})
    return config
