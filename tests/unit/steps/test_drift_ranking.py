"""The drift ranking on hand-made graphs: which node owns a tensor, error before and after, growth, order."""

from __future__ import annotations

import math

import numpy as np

from navbuild.steps.drift import Node, owners, rank_layers, relative_l2, tensor_errors
from navbuild.steps.drift_onnx import HELPERS, fused_stand_ins

# fp32: x -> A(MatMul) -> a -> B(Relu) -> b -> C(MatMul) -> y
FP32 = (Node("A", "MatMul", ("x", "wa"), ("a",)), Node("B", "Relu", ("a",), ("b",)),
        Node("C", "MatMul", ("b", "wc"), ("y",)))
# the same graph quantized in QDQ form: Q/DQ pairs before A and C, C's output renamed and re-quantized
QDQ = (Node("x_Q", "QuantizeLinear", ("x", "s", "z"), ("xq",)), Node("x_DQ", "DequantizeLinear", ("xq", "s", "z"), ("xd",)),
       Node("A", "MatMul", ("xd", "wa"), ("a",)), Node("B", "Relu", ("a",), ("b",)),
       Node("b_Q", "QuantizeLinear", ("b", "s", "z"), ("bq",)), Node("b_DQ", "DequantizeLinear", ("bq", "s", "z"), ("bd",)),
       Node("C", "MatMul", ("bd", "wc"), ("y_in",)), Node("y_Q", "QuantizeLinear", ("y_in", "s", "z"), ("yq",)),
       Node("y_DQ", "DequantizeLinear", ("yq", "s", "z"), ("y",)))


def test_relative_l2_is_the_norm_of_the_difference_over_the_references():
    assert relative_l2(np.array([3.0, 4.0]), np.array([3.0, 4.0])) == 0.0
    assert math.isclose(relative_l2(np.array([3.0, 5.0]), np.array([3.0, 4.0])), 1 / 5)
    assert relative_l2(np.array([1.0]), np.array([0.0])) == 1e12  # an all-zero reference does not divide by 0
    assert relative_l2(np.array([np.nan]), np.array([1.0])) == math.inf
    # an attention mask's -3.4e38 is not a value: the error of the scores beside it still shows
    assert math.isclose(relative_l2(np.array([3.0, 5.0, -3.4e38]), np.array([3.0, 4.0, -3.4e38])), 1 / 5)
    assert relative_l2(np.array([3.0, -np.inf]), np.array([3.0, -np.inf])) == 0.0


def test_a_tensor_behind_quantize_dequantize_helpers_is_owned_by_the_node_that_computed_it():
    own = owners(QDQ, HELPERS)
    assert own["y"].name == "C" and own["a"].name == "A" and own["bd"].name == "B"
    assert "xd" not in own  # a graph input quantized: no computing node owns it


def test_growth_is_the_error_a_layer_adds_to_its_inputs_and_ranks_the_layers():
    errors = {"a": 0.01, "b": 0.012, "y": 0.30}
    layers, along = rank_layers(QDQ, FP32, errors, HELPERS)
    assert [r["name"] for r in layers] == ["C", "A", "B"]
    c = layers[0]
    assert (c["op_type"], c["error_before"], c["error_after"], c["position"]) == ("MatMul", 0.012, 0.30, 2)
    assert math.isclose(c["growth"], 0.288)
    a = next(r for r in layers if r["name"] == "A")
    assert a["error_before"] == 0.0  # graph input
    assert [(r["name"], r["error"], r["position"]) for r in along] == [("A", 0.01, 0), ("B", 0.012, 1),
                                                                        ("C", 0.30, 2)]


def test_an_uncompared_input_stands_for_its_producers_inputs():
    # the variant fused A and B: the fp32 tensor "a" does not exist in it
    fused = (Node("A", "MatMul", ("x", "wa"), ("b",)), Node("C", "MatMul", ("b", "wc"), ("y",)))
    layers, _ = rank_layers(fused, FP32, {"b": 0.05, "y": 0.06}, HELPERS)
    assert [(r["name"], r["error_before"]) for r in layers] == [("A", 0.0), ("C", 0.05)]


def test_a_node_a_quantizer_renamed_is_named_as_the_graph_it_read_names_it():
    # ONNX Runtime's dynamic quantizer turns MatMul C into DynamicQuantizeLinear, MatMulInteger, Cast, Mul
    dynamic = (Node("A", "MatMul", ("x", "wa"), ("a",)), Node("B", "Relu", ("a",), ("b",)),
               Node("b_quant", "DynamicQuantizeLinear", ("b",), ("bq", "bs", "bz")),
               Node("C_quant", "MatMulInteger", ("bq", "wq"), ("yi",)), Node("C_cast", "Cast", ("yi",), ("yf",)),
               Node("C_scale_mul", "Mul", ("yf", "bs"), ("y",)))
    layers, _ = rank_layers(dynamic, FP32, {"a": 0.0, "b": 0.0, "y": 0.2}, HELPERS)
    assert layers[0] == {"name": "C", "op_type": "MatMul", "error_before": 0.0, "error_after": 0.2,
                         "growth": 0.2, "position": 2}


def test_the_layer_where_values_stop_being_finite_ranks_first():
    errors = {"a": math.inf, "b": math.inf, "y": 0.5}  # relative_l2 is inf where a value is not finite
    layers, _ = rank_layers(QDQ, FP32, errors, HELPERS)
    assert [(r["name"], r["growth"]) for r in layers] == [("A", math.inf), ("B", 0.0), ("C", -math.inf)]


def test_an_activation_fused_into_its_quantize_pair_is_compared_after_the_pair():
    # the quantizer dropped Relu B: A now writes "b" unclipped, the Q/DQ after it clips
    fp32 = FP32
    variant = (Node("A", "MatMul", ("x", "wa"), ("b",)), Node("b_Q", "QuantizeLinear", ("b", "s", "z"), ("bq",)),
               Node("b_DQ", "DequantizeLinear", ("bq", "s", "z"), ("bd",)), Node("C", "MatMul", ("bd", "wc"), ("y",)))
    assert fused_stand_ins(variant, fp32) == {"b": "bd"}
    assert fused_stand_ins(QDQ, fp32) == {}  # nothing fused: every tensor compared as it is
    errors = tensor_errors({"b": np.array([-1.0, 2.0]), "bd": np.array([0.0, 2.0])}, {"b": np.array([0.0, 2.0])},
                           fused_stand_ins(variant, fp32))
    assert errors == {"b": 0.0}


def test_only_float_tensors_of_one_shape_in_both_runs_are_compared():
    errors = tensor_errors({"f": np.ones(3, np.float16), "i": np.ones(3, np.int8), "s": np.ones(4)},
                           {"f": np.ones(3, np.float32), "i": np.ones(3, np.int8), "s": np.ones(3), "gone": np.ones(3)})
    assert errors == {"f": 0.0}


def test_a_shape_carries_no_error_and_a_long_uncompared_chain_is_walked_without_recursion():
    chain = [Node("first", "MatMul", ("x", "w"), ("t0",))]
    chain += [Node(f"n{i}", "Relu", (f"t{i - 1}",), (f"t{i}",)) for i in range(1, 5000)]
    chain += [Node("shape", "Shape", ("t0",), ("s",)), Node("last", "Reshape", ("t4999", "s"), ("y",)),
              Node("sized", "Reshape", ("x", "s"), ("z",))]
    layers, _ = rank_layers(chain, chain, {"t0": 0.5, "y": 0.6, "z": 0.0}, HELPERS)
    by_name = {r["name"]: r for r in layers}
    assert by_name["last"]["error_before"] == 0.5  # through 4999 uncompared Relus
    assert by_name["sized"]["error_before"] == 0.0  # x's shape is not x's values


def test_a_mode_this_machine_cannot_run_is_not_measured_rather_than_failed():
    from pathlib import Path

    import pytest

    from navbuild.report.summary import drift_text
    from navbuild.steps.drift import DriftParams, NotMeasurable
    from navbuild.steps.drift_openvino import OpenVinoDrift

    pytest.importorskip("openvino")
    with pytest.raises(NotMeasurable, match="no runtime mode 'fp8'"):
        OpenVinoDrift().run_graphs(DriftParams("v", "openvino", 1, mode="fp8"), Path("missing"), Path("missing"), {})
    row = {"status": "built", "not_measured": "OpenVINO mode 'bf16' needs a CPU with native bf16", "layers": []}
    assert drift_text(row) == "drift: not measured (OpenVINO mode 'bf16' needs a CPU with native bf16)"
