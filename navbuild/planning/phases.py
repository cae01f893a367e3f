"""The later phases of a build as generators in its graph: the finalists once the variants are ranked,
then the Triton targets of the best deployable variants.

Declared when the graph is planned, with what each waits for; the executor (or a plan, on
cached outcomes) runs each once that is settled. The ranking is chosen once, by the first.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping

from navbuild.planning.finalists import FINALISTS_ID, finalists_target
from navbuild.planning.graph import Expansion, Generator, Graph
from navbuild.planning.outcome import BUILT, CACHED
from navbuild.planning.ranking import rank
from navbuild.planning.triton import expand_triton, resolved_kind, triton_variants
from navbuild.select import Choice, choose_from_finalists

#: generator ids: the ranking (which adds the finalists), the Triton deployment
RANKING, TRITON = "ranking", "triton"
NO_TRITON_VARIANT = "triton: no correct variant with a native Triton backend to deploy"


def declare_later_phases(graph: Graph, recipe: Any, cwd: Path) -> None:
    """The ranking waits for every target of the variants and every search declared before it (an
    accuracy-aware variant's, so it is ranked with the others); Triton (when enabled) waits for the
    ranking's finalists.

    ``recipe`` is the one fitted to the source: the finalists use the sizes the profiles ran at.
    """
    # with fewer than two finalists asked for, the ranking adds nothing: the plan shows it as the ranking
    shows = FINALISTS_ID if recipe.profile.finalists >= 2 else RANKING
    graph.declare(Generator(RANKING, shows, tuple(graph.order) + tuple(graph.generators),
                            partial(_rank_and_add_finalists, recipe)))
    if recipe.triton.enabled:
        t = recipe.triton
        which = ", ".join(t.variants) if t.variants else f"the top {t.top} correct variant(s) with a native backend"
        graph.declare(Generator(TRITON, "triton/*", (RANKING,), partial(_add_triton, recipe, cwd),
                                then=f"searches {which} (triton/model, triton/measure/<config>, triton/search, "
                                     "triton/validate)"))


def ranking_of(graph: Graph) -> Choice | None:
    """The build's ranking of the variants (None until the ranking phase ran)."""
    done = graph.expansions.get(RANKING)
    return None if done is None else done.value


def _rank_and_add_finalists(recipe: Any, graph: Graph, outcomes: Mapping[str, Any]) -> Expansion:
    """Rank the settled variants; the top ``profile.finalists`` correct ones (two or more) are re-measured interleaved."""
    first = rank(graph, outcomes, recipe)
    target = finalists_target(graph, recipe, [n for n, _ in first.ranking], first.batch_size)
    if target is not None:
        graph.add(target)
    return Expansion(value=first)


def _add_triton(recipe: Any, cwd: Path, graph: Graph, outcomes: Mapping[str, Any]) -> Expansion:
    """The Triton targets of the variants to deploy: the finalists' winner first, then the ranking."""
    ranking = [n for n, _ in ranking_of(graph).ranking]
    finalists = outcomes.get(FINALISTS_ID)
    if finalists is not None and finalists.status in (BUILT, CACHED):
        sel = recipe.select
        best = choose_from_finalists(finalists.result, sel.objective, sel.noise).variant
        if best:
            ranking = [best] + [n for n in ranking if n != best]
    chosen = triton_variants(recipe, ranking, resolved_kind(graph))
    if not chosen:
        return Expansion(warnings=[NO_TRITON_VARIANT])
    expand_triton(graph, recipe, chosen, cwd)
    return Expansion(value=chosen)


__all__ = ["declare_later_phases", "ranking_of", "RANKING", "TRITON"]
