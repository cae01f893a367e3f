"""Planner and graph: what targets a recipe expands to, with a fake store for statuses."""

from pathlib import Path

import pytest

from navbuild.cache.keys import cache_key
from navbuild.planning.graph import Graph
from navbuild.planning.planner import expand
from navbuild.planning.status import plan_statuses
from navbuild.planning.target import Leaf, Target
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig


def mlp_recipe(**changes) -> Recipe:
    r = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
               inputs=[InputConfig(name="x", shape=["batch", 64])], outputs=["y"])
    for k, v in changes.items():
        setattr(r, k, v)
    return r


class FakeMemo:
    def digest(self, path: Path) -> str:
        return "d-" + Path(path).name


class FakeStore:
    """Entries are the keys in ``present``; each target's output digest is derived from its key."""

    def __init__(self, present=()):
        self.memo = FakeMemo()
        self.present = set(present)

    def peek(self, key):
        return {"digest": "out-" + key[:8]} if key in self.present else None


def test_torch_recipe_expands_to_every_variant_check_and_profile():
    graph = expand(mlp_recipe(), Path("."))
    assert list(graph.leaves) == ["source"]
    assert graph.order == ["reference", "onnx", "onnx-opt", "correctness/onnx", "correctness/onnx-opt",
                           "profile/torch", "profile/onnx", "profile/onnx-opt"]
    assert graph.targets["onnx-opt"].inputs == {"onnx": "onnx"}
    assert graph.targets["profile/torch"].inputs == {"reference": "reference", "source": "source"}
    assert graph.variants() == ["torch", "onnx", "onnx-opt"]
    assert graph.dependents("onnx") == ["onnx-opt", "correctness/onnx", "correctness/onnx-opt",
                                        "profile/onnx", "profile/onnx-opt"]


def test_onnx_source_uses_the_file_as_the_onnx_variant(tmp_path: Path):
    (tmp_path / "m.onnx").write_bytes(b"fake")
    recipe = mlp_recipe(source=SourceConfig(onnx="m.onnx"), formats=["onnx", "onnx-opt"])
    graph = expand(recipe, tmp_path)
    assert "onnx" not in graph.targets
    assert graph.targets["onnx-opt"].inputs == {"onnx": "source"}
    assert graph.targets["correctness/onnx"].inputs["model"] == "source"


def test_graph_rejects_unknown_inputs_and_duplicates():
    g = Graph()
    g.add(Leaf("source", Path("x"), ()))
    with pytest.raises(ValueError, match="unknown 'nope'"):
        g.add(Target("a", "S", None, {"m": "nope"}))
    g.add(Target("a", "S", None, {"m": "source"}))
    with pytest.raises(ValueError, match="duplicate"):
        g.add(Target("a", "S", None, {}))


def test_statuses_missing_then_cached_then_stale_with_reasons():
    recipe = mlp_recipe()
    graph = expand(recipe, Path("."))
    empty = plan_statuses(graph, FakeStore(), previous=None)
    assert {t.status for t in empty.targets} == {"missing"}
    keys = {t.id: t.key for t in empty.targets if t.key}
    assert set(keys) == {"reference", "onnx"}  # the rest wait for their inputs' digests

    # Pretend every target was built: a fixed point of the plan with a store that has them.
    store = FakeStore()
    for _ in range(5):
        plan = plan_statuses(graph, store, previous=None)
        store.present |= {t.key for t in plan.targets if t.key}
    plan = plan_statuses(graph, store, previous=None)
    assert [t.status for t in plan.targets] == ["cached"] * len(graph.order)
    record = {"targets": {t.id: {"key": t.key, "payload": t.payload} for t in plan.targets}}

    recipe.onnx.opset = 18
    recipe.correctness.atol = 1e-3
    changed = plan_statuses(expand(recipe, Path(".")), store, previous=record).by_id()
    assert changed["reference"].status == "cached"
    assert changed["profile/torch"].status == "cached"
    assert changed["onnx"].label == "stale: params.opset: 17 -> 18"
    assert changed["onnx-opt"].label == "stale: input onnx will be rebuilt"
    assert changed["profile/onnx"].label == "stale: input onnx will be rebuilt"


def test_a_threads_change_leaves_torch_keys_alone_but_not_onnx_runtime_options():
    recipe = mlp_recipe()
    before = expand(recipe, Path("."))
    recipe.runtime.graph_level = "basic"
    after = expand(recipe, Path("."))
    assert before.targets["profile/torch"].params == after.targets["profile/torch"].params
    assert before.targets["reference"].params == after.targets["reference"].params
    assert before.targets["profile/onnx"].params != after.targets["profile/onnx"].params


def test_denormal_flushing_reaches_onnx_runtime_profiles_only():
    recipe = mlp_recipe()
    before = expand(recipe, Path("."))
    assert before.targets["profile/onnx"].params.runtime.flush_denormals is True
    assert before.targets["profile/torch"].params.runtime.flush_denormals is False
    recipe.runtime.flush_denormals = False
    after = expand(recipe, Path("."))
    assert before.targets["profile/torch"].params == after.targets["profile/torch"].params
    assert after.targets["profile/onnx"].params.runtime.flush_denormals is False
    assert before.targets["profile/onnx"].params != after.targets["profile/onnx"].params


def test_openvino_converts_from_onnx_by_default_and_from_torch_on_request():
    from navbuild.recipe.schema import OpenVinoConfig

    recipe = mlp_recipe(formats=["openvino"], precisions=["fp32", "int8"])
    graph = expand(recipe, Path("."))
    assert graph.targets["openvino"].step == "OpenVinoFromOnnx"
    assert graph.targets["openvino"].inputs == {"onnx": "onnx"}
    recipe.openvino = OpenVinoConfig(source="torch")
    graph = expand(recipe, Path("."))
    assert graph.targets["openvino"].step == "OpenVinoFromTorch"
    assert graph.targets["openvino"].inputs == {"source": "source"}
    assert graph.targets["openvino"].params.outputs == ("y",)
    # the int8 models build on that IR; nothing needs ONNX any more
    assert graph.targets["openvino-int8"].inputs["openvino"] == "openvino"
    assert "onnx" not in graph.targets


def test_openvino_preset_auto_resolves_as_nncf_would_and_names_it_in_the_key():
    from navbuild.recipe.schema import OpenVinoConfig, OpenVinoQuantConfig

    def params(**quant):
        recipe = mlp_recipe(formats=["openvino"], precisions=["int8"],
                            openvino=OpenVinoConfig(quantization=OpenVinoQuantConfig(**quant)))
        return expand(recipe, Path(".")).targets["openvino-int8"].params

    assert params().preset == "performance"
    assert params(model_type="transformer").preset == "mixed"
    assert params(model_type="transformer", preset="performance").preset == "performance"
    # the step's params (its key) name the preset that ran: "auto" and what it means are one build
    assert params(model_type="transformer", preset="mixed") == params(model_type="transformer")


def test_onnx_openvino_runs_the_onnx_model_on_openvinos_execution_provider():
    from navbuild.steps.base import load_step

    graph = expand(mlp_recipe(formats=["onnx", "onnx-openvino"]), Path("."))
    assert graph.variants() == ["onnx", "onnx-openvino-ep"]
    check = graph.targets["correctness/onnx-openvino-ep"]
    assert check.inputs["model"] == "onnx"  # no conversion of its own
    assert (check.params.runtime.mode, check.params.runtime.graph_level) == ("openvino-ep", "disable")
    step = load_step(check.step)
    # the wheel is a requirement (unavailable without it) and its version is in the key
    assert "onnxruntime-openvino" in step.requirements(check.params)
    assert "onnxruntime-openvino" in step.tools_for(check.params)
    assert "onnxruntime-openvino" not in step.tools_for(graph.targets["correctness/onnx"].params)


def test_torch_aoti_compiles_the_source_for_the_cpu_and_its_key_holds_the_hardware():
    from navbuild.steps.base import load_step

    graph = expand(mlp_recipe(formats=["torch", "torch-aoti"], source=SourceConfig(
        torch="navbuild.examples.models:mlp", packages=["mypkg"])), Path("."))
    assert graph.variants() == ["torch", "torch-aoti"]
    aoti = graph.targets["torch-aoti"]
    assert aoti.step == "AotiFromTorch" and aoti.inputs == {"source": "source"}
    assert (aoti.params.device, aoti.params.packages, aoti.params.axes) == ("cpu", ("mypkg",), {})
    assert load_step(aoti.step).depends_on_hardware(aoti.params)  # machine code for this CPU
    for tid in ("correctness/torch-aoti", "profile/torch-aoti"):
        assert graph.targets[tid].inputs["model"] == "torch-aoti"
        assert graph.targets[tid].params.variant_format == "torch-aoti"
    assert "torch-aoti-cuda" not in graph.targets  # the cuda package is planned only for its variant


def test_openvino_checks_and_profiles_carry_openvinos_version():
    from navbuild.steps.base import load_step

    graph = expand(mlp_recipe(formats=["openvino"], precisions=["fp32"]), Path("."))
    for tid in ("correctness/openvino", "profile/openvino"):
        target = graph.targets[tid]
        assert "openvino" in load_step(target.step).tools_for(target.params)


def test_onnx_levels_run_the_onnx_model_at_each_other_graph_level():
    recipe = mlp_recipe(formats=["onnx", "onnx-levels"])
    graph = expand(recipe, Path("."))
    assert graph.variants() == ["onnx", "onnx-disable", "onnx-basic", "onnx-extended"]
    levels = {v: graph.targets[f"profile/{v}"].params.runtime.graph_level for v in graph.variants()}
    assert levels == {"onnx": "all", "onnx-disable": "disable", "onnx-basic": "basic", "onnx-extended": "extended"}
    for v in ("onnx-disable", "onnx-basic", "onnx-extended"):
        assert graph.targets[f"correctness/{v}"].inputs["model"] == "onnx"  # no conversion of their own
        assert graph.targets[f"correctness/{v}"].params.runtime.graph_level == levels[v]
    # the recipe's runtime level moves only the plain onnx variant
    recipe.runtime.graph_level = "basic"
    moved = expand(recipe, Path("."))
    assert moved.targets["profile/onnx-extended"].params == graph.targets["profile/onnx-extended"].params
    assert moved.targets["profile/onnx"].params.runtime.graph_level == "basic"


def test_missing_package_makes_targets_unavailable(monkeypatch):
    from navbuild.steps.base import load_step

    opt = load_step("OrtOptimizedFromOnnx")
    monkeypatch.setattr(opt, "missing_requirements", classmethod(lambda cls, params=None: ["onnxruntime"]))
    plan = plan_statuses(expand(mlp_recipe(), Path(".")), FakeStore(), previous=None).by_id()
    assert plan["onnx-opt"].label == "unavailable: onnxruntime not installed"
    assert plan["correctness/onnx-opt"].label == "unavailable: input onnx-opt is unavailable"
    assert plan["onnx"].status == "missing"


def test_keys_ignore_paths(tmp_path: Path):
    """The same recipe in two different folders has the same keys (no paths in keys)."""
    a = plan_statuses(expand(mlp_recipe(), tmp_path), FakeStore(), None).by_id()["onnx"].key
    b = plan_statuses(expand(mlp_recipe(), Path("/")), FakeStore(), None).by_id()["onnx"].key
    assert a == b and a == cache_key(plan_statuses(expand(mlp_recipe(), tmp_path), FakeStore(), None)
                                     .by_id()["onnx"].payload)


def test_every_reduced_precision_variant_gets_a_drift_target_against_the_model_it_was_made_from():
    from navbuild.steps.drift import DriftConfig

    recipe = mlp_recipe(formats=["torch", "onnx", "openvino"], precisions=["fp32", "bf16", "fp16", "int8"])
    recipe.profile.batch_sizes = [1, 8, 32]
    graph = expand(recipe, Path("."))
    drift = {t.id: t for t in graph.targets.values() if t.kind == "drift"}
    # fp32 variants have nothing to drift from
    assert sorted(drift) == ["drift/onnx-fp16", "drift/onnx-int8-dynamic", "drift/onnx-int8-static",
                             "drift/openvino-bf16", "drift/openvino-int8", "drift/openvino-int8-wo",
                             "drift/torch-bf16", "drift/torch-bf16-autocast", "drift/torch-int8-dynamic"]
    # a torch runtime mode is the source run in that mode, compared with the source run eagerly
    cast = drift["drift/torch-bf16"]
    assert cast.inputs == {"model": "source", "fp32": "source", "reference": "reference"}
    assert (cast.step, cast.params.mode, cast.params.factory.factory) == ("TorchDrift", "cast-bf16",
                                                                           "navbuild.examples.models:mlp")
    static = drift["drift/onnx-int8-static"]
    assert (static.step, static.variant) == ("OnnxDrift", "onnx-int8-static")
    assert static.inputs == {"model": "onnx-int8-static", "fp32": "onnx", "reference": "reference"}
    # the largest profiled batch size (1, 8, 32) the 8 samples fill
    assert (static.params.compared_with, static.params.batch, static.params.top) == ("onnx", 8, 5)
    assert static.params.factory is None
    assert drift["drift/openvino-int8"].inputs["fp32"] == "openvino"
    # bf16 is the fp32 IR with a precision hint: compared with that IR, in that mode
    bf16 = drift["drift/openvino-bf16"]
    assert bf16.inputs["model"] == bf16.inputs["fp32"] == "openvino" and bf16.params.mode == "bf16"
    # nothing waits for a drift target but the later phases
    assert not [t.id for t in graph.targets.values() if set(t.inputs.values()) & set(drift)]
    recipe.drift = DriftConfig(enabled=False)
    assert not [t for t in expand(recipe, Path(".")).targets.values() if t.kind == "drift"]


def test_an_onnx_source_variant_drifts_against_the_source_file(tmp_path: Path):
    (tmp_path / "m.onnx").write_bytes(b"fake")
    recipe = mlp_recipe(source=SourceConfig(onnx="m.onnx"), formats=["onnx"], precisions=["int8"])
    graph = expand(recipe, tmp_path)
    assert graph.targets["drift/onnx-int8-static"].inputs["fp32"] == "source"
