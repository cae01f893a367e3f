"""The finalists target: added after the profiles, once it is known which variants are fastest."""

from __future__ import annotations

from typing import Any

from navbuild import formats
from navbuild.planning.graph import Graph
from navbuild.planning.planner import REFERENCE_ID, SOURCE_ID
from navbuild.planning.target import PROFILE, Target
from navbuild.steps.base import load_step
from navbuild.steps.finalists import FinalistSpec

FINALISTS_ID = "finalists"


def finalists_target(graph: Graph, recipe: Any, ranking: list[str], batch_size: int | None) -> Target | None:
    """A CompareFinalists target over the top ``profile.finalists`` correct variants, or None."""
    count = recipe.profile.finalists
    names = [n for n in ranking if formats.variant(n) is not None][:count]
    if count < 2 or len(names) < 2 or batch_size is None:
        return None
    step = load_step("CompareFinalists")
    specs, inputs = [], {"reference": REFERENCE_ID}
    for name in names:
        profile = graph.targets[f"{PROFILE}/{name}"].params
        model = graph.variant_models.get(name)
        slot = f"model-{name}" if model else "source"
        inputs[slot] = model or SOURCE_ID
        specs.append(_spec(name, formats.variant(name).runner, profile.runtime, profile.factory, slot))
    params = step.Params.from_section(recipe.profile, finalists=tuple(specs), batch_size=batch_size)
    # finalists on a GPU are timed there: its fingerprint joins the key, as it does their profiles'
    gpu = next((graph.targets[f"{PROFILE}/{n}"].gpu for n in names if graph.targets[f"{PROFILE}/{n}"].gpu is not None),
               None)
    return Target(FINALISTS_ID, step.name, params, inputs, kind="finalists", gpu=gpu)


def _spec(name: str, runner: str, runtime: Any, factory: Any, slot: str) -> Any:

    return FinalistSpec(variant=name, runner=runner, runtime=runtime, factory=factory, input=slot)
