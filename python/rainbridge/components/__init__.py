"""Components: the steps a user composes into a job (see docs/JOBS.md)."""

from __future__ import annotations

from rainbridge.components.base import Component, ComponentContext, ComponentParamError
from rainbridge.errors import JobSpecError

_REGISTRY: dict[str, type[Component]] = {}


def register(cls: type[Component]) -> type[Component]:
    """Make a component type usable in job files."""
    _REGISTRY[cls.type_name] = cls
    return cls


def get_component(type_name: str) -> Component:
    """The component registered as ``type_name``."""
    _load_builtins()
    try:
        return _REGISTRY[type_name]()
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise JobSpecError(f"unknown component type {type_name!r} (known: {known})") from None


def list_components() -> list[Component]:
    _load_builtins()
    return [cls() for _, cls in sorted(_REGISTRY.items())]


def component_types() -> list[str]:
    """The names of every registered component type (what grants name as purposes)."""
    _load_builtins()
    return sorted(_REGISTRY)


def _load_builtins() -> None:
    if _REGISTRY:
        return
    from rainbridge.components.binning import BinningComponent
    from rainbridge.components.evaluate import EvaluateComponent
    from rainbridge.components.predict import PredictComponent
    from rainbridge.components.psi import PsiComponent
    from rainbridge.components.stats import StatsComponent
    from rainbridge.components.train_fedavg import TrainFedAvgComponent
    from rainbridge.components.train_lr import TrainLrComponent
    from rainbridge.components.train_sgb import TrainSgbComponent

    register(PsiComponent)
    register(StatsComponent)
    register(TrainLrComponent)
    register(TrainFedAvgComponent)
    register(TrainSgbComponent)
    register(BinningComponent)
    register(PredictComponent)
    register(EvaluateComponent)


__all__ = [
    "Component",
    "ComponentContext",
    "ComponentParamError",
    "component_types",
    "get_component",
    "list_components",
    "register",
]
