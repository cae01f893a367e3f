"""The format family registry and the tables derived from it (catalogue, choices, runners, runtimes, backends)."""

from __future__ import annotations

import pytest

from navbuild import formats
from navbuild.recipe.schema import InputConfig, Recipe, SourceConfig
from navbuild.recipe.validate_triton import deployable
from navbuild.runners.factory import make_runner
from navbuild.steps.base import STEP_REGISTRY, load_step, runtime_requirements, step_refs
from navbuild.runtime import RuntimeOptions
from navbuild.triton.repository import backend_for

#: the catalogue as it was spelled before the families (simplicity order)
CATALOGUE = [
    ("torch", "torch", "fp32", "torch", None, ""),
    ("torchscript", "torchscript", "fp32", "torchscript", "torchscript", ""),
    ("torch-export", "torch-export", "fp32", "torch-export", "torch-export", ""),
    ("onnx", "onnx", "fp32", "onnx", "onnx", ""),
    ("onnx-opt", "onnx-opt", "fp32", "onnx", "onnx-opt", ""),
    ("onnx-disable", "onnx-levels", "fp32", "onnx", "onnx", ""),
    ("onnx-basic", "onnx-levels", "fp32", "onnx", "onnx", ""),
    ("onnx-extended", "onnx-levels", "fp32", "onnx", "onnx", ""),
    ("openvino", "openvino", "fp32", "openvino", "openvino", ""),
    ("onnx-openvino-ep", "onnx-openvino", "fp32", "onnx", "onnx", "openvino-ep"),
    ("torch-compile", "torch-compile", "fp32", "torch", None, "compile"),
    ("torch-bf16-autocast", "torch", "bf16", "torch", None, "autocast-bf16"),
    ("torch-bf16", "torch", "bf16", "torch", None, "cast-bf16"),
    ("torch-compile-bf16", "torch-compile", "bf16", "torch", None, "compile-bf16"),
    ("openvino-bf16", "openvino", "bf16", "openvino", "openvino", "bf16"),
    ("torch-aoti", "torch-aoti", "fp32", "torch-aoti", "torch-aoti", ""),  # issue 15: AOTInductor on the CPU
    ("onnx-fp16", "onnx", "fp16", "onnx", "onnx-fp16", ""),
    ("torch-int8-dynamic", "torch", "int8", "torch", None, "dynamic-int8"),
    ("onnx-int8-dynamic", "onnx", "int8", "onnx", "onnx-int8-dynamic", ""),
    ("onnx-int8-static", "onnx", "int8", "onnx", "onnx-int8-static", ""),
    ("onnx-int8-aa", "onnx", "int8", "onnx", "onnx-int8-aa", ""),
    ("openvino-int8-wo", "openvino", "int8", "openvino", "openvino-int8-wo", ""),
    ("openvino-int8", "openvino", "int8", "openvino", "openvino-int8", ""),
    ("openvino-int8-aa", "openvino", "int8", "openvino", "openvino-int8-aa", ""),
    ("onnx-sanitized", "onnx-sanitized", "fp32", "onnx", "onnx-sanitized", ""),
    ("openvino-int8-aa-bf16", "openvino", "int8", "openvino", "openvino-int8-aa-bf16", "bf16"),
]

#: the GPU variants (device cuda), after every CPU one
GPU_CATALOGUE = [
    ("torch-cuda", "torch", "fp32", "torch-cuda", None, ""),
    ("torch-cuda-compile", "torch-compile", "fp32", "torch-cuda", None, "compile"),
    ("torch-cuda-compile-cudagraphs", "torch-compile", "fp32", "torch-cuda", None, "compile-cudagraphs"),
    ("torch-aoti-cuda", "torch-aoti", "fp32", "torch-aoti", "torch-aoti-cuda", ""),
    ("onnx-cuda", "onnx", "fp32", "onnx-cuda", "onnx", ""),
    ("torch-cuda-bf16-autocast", "torch", "bf16", "torch-cuda", None, "autocast-bf16"),
    ("torch-cuda-bf16", "torch", "bf16", "torch-cuda", None, "cast-bf16"),
    ("torch-cuda-fp16-autocast", "torch", "fp16", "torch-cuda", None, "autocast-fp16"),
    ("torch-cuda-fp16", "torch", "fp16", "torch-cuda", None, "cast-fp16"),
    ("onnx-cuda-fp16", "onnx", "fp16", "onnx-cuda", "onnx-fp16", ""),
    # TensorRT engines, after every other variant
    ("tensorrt", "tensorrt", "fp32", "tensorrt", "tensorrt", ""),
    ("tensorrt-fp16", "tensorrt", "fp16", "tensorrt", "tensorrt-fp16", ""),
    ("tensorrt-bf16", "tensorrt", "bf16", "tensorrt", "tensorrt-bf16", ""),
    ("tensorrt-int8", "tensorrt", "int8", "tensorrt", "tensorrt-int8", ""),
    ("tensorrt-fp8", "tensorrt", "fp8", "tensorrt", "tensorrt-fp8", ""),
    ("torch-tensorrt-fp16", "torch-tensorrt", "fp16", "torch-tensorrt", "torch-tensorrt-fp16", ""),
]


def test_the_catalogue_keeps_its_order_and_facts() -> None:
    facts = [(v.name, v.format, v.precision, v.runner, v.model, v.mode) for v in formats.catalogue()]
    assert [f for f, v in zip(facts, formats.catalogue()) if v.device == "cpu"] == CATALOGUE
    assert facts == CATALOGUE + GPU_CATALOGUE  # every GPU variant ranks after every CPU one
    assert {v.device for v in formats.catalogue()} == {"cpu", "cuda"}
    assert [v.name for v in formats.catalogue() if v.graph_level] == [
        "onnx-disable", "onnx-basic", "onnx-extended", "onnx-openvino-ep"]
    assert formats.variant("onnx-fp16").note.startswith("fp16 is kept for GPU targets")
    assert [formats.simplicity(n) for n in ("torch", "onnx", "openvino-int8")] == [0, 3, 22]
    assert formats.simplicity("no-such-variant") == len(CATALOGUE) + len(GPU_CATALOGUE)


def test_the_families_and_the_recipe_choices() -> None:
    assert [f.name for f in formats.families()] == ["torch", "onnxruntime", "openvino", "tensorrt"]
    assert formats.recipe_formats() == ("torch", "torchscript", "torch-export", "torch-compile", "torch-aoti",
                                        "torch-tensorrt", "onnx", "onnx-opt", "onnx-levels", "onnx-openvino",
                                        "onnx-sanitized", "openvino", "tensorrt")
    assert formats.precisions() == ("fp32", "bf16", "fp16", "int8", "fp8")
    assert formats.torch_source_formats() == ("torch", "torchscript", "torch-export", "torch-compile", "torch-aoti",
                                              "torch-tensorrt")
    assert [v.name for v in formats.selected(["onnx", "openvino"], ["int8"], [])] == [
        "onnx-int8-dynamic", "onnx-int8-static", "onnx-int8-aa", "openvino-int8-wo", "openvino-int8", "openvino-int8-aa",
        "openvino-int8-aa-bf16"]
    assert [v.name for v in formats.selected(["torch"], ["fp32"], ["openvino", "torch"])] == ["torch", "openvino"]


def test_the_device_picks_the_variants_of_its_kind() -> None:
    """cpu: today's selection exactly; cuda: only the GPU variants; explicit names as given, either device."""
    fmts, precs = ["torch", "torch-compile", "torch-aoti", "onnx", "onnx-opt"], ["fp32", "bf16", "fp16", "int8"]
    assert [v.name for v in formats.selected(fmts, precs, [])] == [
        v.name for v in formats.catalogue() if v.device == "cpu" and v.format in fmts and v.precision in precs]
    assert [v.name for v in formats.selected(fmts, precs, [], "cuda")] == [
        "torch-cuda", "torch-cuda-compile", "torch-cuda-compile-cudagraphs", "torch-aoti-cuda", "onnx-cuda",
        "torch-cuda-bf16-autocast", "torch-cuda-bf16", "torch-cuda-fp16-autocast", "torch-cuda-fp16", "onnx-cuda-fp16"]
    assert [v.name for v in formats.selected(["torch", "onnx"], ["fp16"], [], "cuda")] == [
        "torch-cuda-fp16-autocast", "torch-cuda-fp16", "onnx-cuda-fp16"]
    assert [v.name for v in formats.selected([], [], ["onnx-cuda", "torch"], "cpu")] == ["torch", "onnx-cuda"]
    assert formats.selected(["onnx-opt", "openvino"], ["fp32"], [], "cuda") == []


def test_the_gpu_runners_and_the_aoti_conversion_are_declared() -> None:
    assert formats.runner("torch-cuda").make == "navbuild.runners.torch_cuda_runner:make"
    assert formats.runner("torch-aoti").make == "navbuild.runners.aoti_runner:make"
    onnx_cuda = formats.runner("onnx-cuda")
    assert onnx_cuda.make == "navbuild.runners.ort_cuda_runner:make" and onnx_cuda.session_options
    assert formats.runtime_requirements("onnx-cuda") == ("onnxruntime-gpu",)
    aoti = formats.conversion("torch-aoti-cuda")
    assert aoti.device == "cuda" and aoti.steps == {"AotiFromTorch": "navbuild.steps.aoti_from_torch:AotiFromTorch"}
    assert [c.model for c in formats.conversions() if c.device == "cuda"] == [
        "torch-aoti-cuda", "torch-tensorrt-fp16", "tensorrt", "tensorrt-fp16", "tensorrt-bf16", "tensorrt-int8",
        "tensorrt-fp8"]
    assert formats.runtime_requirements("torch-tensorrt") == ("torch", "torch_tensorrt")
    recipe = Recipe(name="t", source=SourceConfig(torch="navbuild.examples.models:mlp"),
                    inputs=[InputConfig(name="x", shape=["batch", 64])], outputs=["y"])
    planned = aoti.plan(formats.PlanContext(recipe))
    assert (planned.step, dict(planned.inputs)) == ("AotiFromTorch", {"source": "source"})
    assert sorted(planned.params) == ["axes", "device", "factory", "inputs", "packages", "seed"]  # AotiFromTorchParams' fields
    assert planned.params["device"] == "cuda"


@pytest.mark.parametrize(("runner", "mode", "packages"), [
    ("torch", "", ("torch",)), ("torch", "compile", ("torch",)), ("torchscript", "", ("torch",)),
    ("torch-export", "", ("torch",)), ("onnx", "", ("onnxruntime",)), ("torch-aoti", "", ("torch",)),
    ("torch-cuda", "compile-cudagraphs", ("torch",)), ("onnx-cuda", "", ("onnxruntime-gpu",)),
    ("onnx", "openvino-ep", ("onnxruntime", "onnxruntime-openvino")), ("openvino", "bf16", ("openvino",)),
    ("no-such-runner", "", ()), (None, "", ()),
])
def test_each_runner_needs_its_runtime(runner, mode, packages) -> None:
    assert formats.runtime_requirements(runner, mode) == packages
    assert runtime_requirements(runner, mode) == packages


def test_each_variant_needs_its_runtime() -> None:
    needs = {v.name: formats.runtime_requirements(v.runner, v.mode) for v in formats.catalogue()}
    assert {n for n, p in needs.items() if p == ("torch",)} == {
        "torch", "torchscript", "torch-export", "torch-compile", "torch-bf16-autocast", "torch-bf16",
        "torch-compile-bf16", "torch-int8-dynamic", "torch-aoti", "torch-cuda", "torch-cuda-compile",
        "torch-cuda-compile-cudagraphs", "torch-aoti-cuda", "torch-cuda-bf16-autocast", "torch-cuda-bf16",
        "torch-cuda-fp16-autocast", "torch-cuda-fp16"}
    assert needs["onnx-openvino-ep"] == ("onnxruntime", "onnxruntime-openvino")
    assert needs["onnx-int8-static"] == ("onnxruntime",) and needs["openvino-int8-wo"] == ("openvino",)


def test_the_triton_backend_maps() -> None:
    assert formats.native_backends() == {"torchscript": "pytorch_libtorch", "onnx": "onnxruntime_onnx",
                                         "openvino": "openvino", "onnx-cuda": "onnxruntime_onnx",
                                         "tensorrt": "tensorrt_plan"}
    assert [backend_for(r) for r in ("onnx", "torchscript", "openvino", "torch", "torch-export")] == [
        "onnxruntime_onnx", "pytorch_libtorch", "openvino", None, None]
    params = {v.name: dict(formats.triton_serving(v.runner).parameters(v))
              for v in formats.catalogue() if formats.triton_serving(v.runner)}
    assert {n: p for n, p in params.items() if p} == {
        "onnx-disable": {"graph_level": "disable"}, "onnx-basic": {"graph_level": "basic"},
        "onnx-extended": {"graph_level": "extended"}, "onnx-openvino-ep": {"graph_level": "disable"},
        "openvino-bf16": {"HINT_BF16": "YES"}, "openvino-int8-aa-bf16": {"HINT_BF16": "YES"}}
    assert [v.name for v in formats.catalogue() if deployable(v.name) is None] == [
        "torchscript", "onnx", "onnx-opt", "onnx-disable", "onnx-basic", "onnx-extended", "openvino",
        "openvino-bf16", "onnx-fp16", "onnx-int8-dynamic", "onnx-int8-static", "onnx-int8-aa",
        "openvino-int8-wo", "openvino-int8", "openvino-int8-aa", "onnx-sanitized", "openvino-int8-aa-bf16",
        "onnx-cuda", "onnx-cuda-fp16", "tensorrt", "tensorrt-fp16", "tensorrt-bf16", "tensorrt-int8", "tensorrt-fp8"]
    assert "OpenVINO execution provider" in deployable("onnx-openvino-ep")
    assert deployable("torch-bf16") == "torch-bf16 runs the torch source (torch): Triton has no native backend for it"


def test_the_triton_backends_and_their_options() -> None:
    from navbuild.triton.model_config import backends, check_backend_parameters, default_config, local_runtime

    assert list(backends()) == ["pytorch_libtorch", "onnxruntime_onnx", "openvino", "tensorrt_plan", "python"]
    assert [b.name for b in formats.triton_backends()] == ["pytorch_libtorch", "onnxruntime_onnx", "openvino",
                                                           "tensorrt_plan"]
    assert backends()["openvino"].model_files == ("model.xml", "model.bin") and backends()["python"].options is None
    assert [default_config(8, b).instance_count for b in ("onnxruntime_onnx", "openvino", None)] == [2, 1, 1]
    assert check_backend_parameters("openvino", {"HINT_BF16": "NO"})[0].startswith("backend option 'HINT_BF16'")
    assert local_runtime("openvino", {"HINT_BF16": "yes", "INFERENCE_NUM_THREADS": "3"}) == {
        "mode": "bf16", "intra_op_threads": "3"}
    assert local_runtime("pytorch_libtorch", {"INTRA_OP_THREAD_COUNT": "2"}) == {"intra_op_threads": "2"}


def test_steps_and_runners_are_the_families() -> None:
    conversions = formats.steps()
    assert set(conversions).isdisjoint(STEP_REGISTRY)
    assert set(step_refs()) == set(STEP_REGISTRY) | set(conversions)
    assert load_step("OpenVinoFromTorch").name == "OpenVinoFromTorch"
    assert [c.model for c in formats.conversions()] == [
        "onnx", "onnx-sanitized", "torchscript", "torch-export", "onnx-opt", "onnx-fp16", "onnx-int8-dynamic",
        "onnx-int8-static", "openvino", "openvino-int8", "openvino-int8-wo", "openvino-int8-aa", "onnx-int8-aa",
        "openvino-int8-aa-bf16", "torch-aoti", "torch-aoti-cuda", "torch-tensorrt-fp16", "tensorrt", "tensorrt-fp16",
        "tensorrt-bf16", "tensorrt-int8", "tensorrt-fp8"]
    assert formats.runner_names() == ("torch", "torchscript", "torch-export", "torch-aoti", "torch-cuda",
                                      "torch-tensorrt", "onnx", "onnx-cuda", "openvino", "tensorrt")
    with pytest.raises(ValueError, match="no runner for variant format 'nope' \\(known: torch, torchscript"):
        make_runner("nope", None, None, ["x"], RuntimeOptions())
    with pytest.raises(KeyError, match="no step named 'Nope'"):
        load_step("Nope")


def test_what_cannot_run_on_a_serialized_source() -> None:
    assert formats.unavailable_on_serialized("m.pt", "torch-compile") == (
        "torch.compile cannot compile a TorchScript module (the source is m.pt)")
    assert formats.unavailable_on_serialized("m.pt2", "torch-compile") == ""
    assert "exported program" in formats.unavailable_on_serialized("m.pt2", "torch-int8-dynamic")
    assert formats.unavailable_on_serialized("m.pt", "onnx") == ""


def _family(name: str = "extra", **changes) -> formats.FormatFamily:
    fields = dict(name=name, formats=("extra",), variants=(formats.Variant("extra", "extra", "fp8", 99, "extra-rt"),),
                  runners=(formats.Runner("extra-rt", "somewhere:make", ("numpy",)),))
    return formats.FormatFamily(**{**fields, **changes})


def test_a_registered_family_joins_the_derived_tables_and_leaves_them() -> None:
    family = formats.register(_family())
    try:
        assert family.module == __name__ and formats.external_modules() == (__name__,)
        assert formats.recipe_formats()[-1] == "extra" and formats.precisions()[-1] == "fp8"
        assert formats.variant_names()[-1] == "extra"
        assert formats.runtime_requirements("extra-rt") == ("numpy",) and backend_for("extra-rt") is None
    finally:
        formats.unregister("extra")
    assert "extra" not in formats.recipe_formats() and formats.external_modules() == ()


def test_a_family_cannot_take_another_familys_names() -> None:
    with pytest.raises(ValueError, match="variant onnx is already declared by another family"):
        formats.register(_family(variants=(formats.Variant("onnx", "extra", "fp32", 99, "extra-rt"),)))
    with pytest.raises(ValueError, match="format onnx is already declared"):
        formats.register(_family(formats=("extra", "onnx")))
    with pytest.raises(ValueError, match="runner onnx is already declared"):
        formats.register(_family(runners=(formats.Runner("onnx", "x:y"),)))
    with pytest.raises(ValueError, match="variants name formats it does not declare: other"):
        formats.register(_family(variants=(formats.Variant("extra", "other", "fp32", 99, "extra-rt"),)))
    assert "extra" not in [f.name for f in formats.families()]
