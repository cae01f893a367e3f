"""Tests for navbuild.cache.keys: canonical JSON, key stability and change reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from navbuild.cache import keys
from navbuild.cache.keys import (
    KEY_SCHEMA_VERSION,
    cache_key,
    canonical_json,
    explain_change,
    key_payload,
    tool_versions,
)


def payload(**over) -> dict:
    base = dict(
        step="OnnxFromTorch",
        step_version=1,
        params={"opset": 17, "shapes": {"x": [1, 8]}, "dynamic": True},
        inputs={"model": "a" * 64},
        tools={"torch": "2.13.0", "onnxruntime": "1.21.0"},
        hardware=None,
    )
    base.update(over)
    return key_payload(**base)


def test_canonical_json_sorts_keys_and_is_compact() -> None:
    assert canonical_json({"b": 1, "a": [1, 2], "c": {"z": 0, "y": 1}}) == (
        '{"a":[1,2],"b":1,"c":{"y":1,"z":0}}'
    )


def test_canonical_json_tuples_become_lists_and_unicode_is_kept() -> None:
    assert canonical_json({"t": (1, 2), "u": "µs"}) == '{"t":[1,2],"u":"µs"}'


def test_canonical_json_floats_are_stable() -> None:
    text = canonical_json({"tol": 0.1, "z": -0.0, "big": 1e-7})
    assert text == '{"big":1e-07,"tol":0.1,"z":0.0}'
    assert json.loads(text)["tol"] == 0.1


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_canonical_json_refuses_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="not finite"):
        canonical_json({"x": bad})


def test_canonical_json_refuses_paths() -> None:
    with pytest.raises(TypeError, match="PosixPath|WindowsPath|Path"):
        canonical_json({"model": Path("/tmp/m.onnx")})


def test_payload_layout() -> None:
    p = payload(hardware={"cpu_model": "A"})
    assert p["schema"] == KEY_SCHEMA_VERSION
    assert set(p) == {"schema", "step", "step_version", "params", "inputs", "tools", "hardware"}


def test_key_is_sha256_hex_and_stable() -> None:
    k = cache_key(payload())
    assert len(k) == 64 and int(k, 16) >= 0
    assert cache_key(payload()) == k


def test_dict_order_does_not_change_key() -> None:
    a = payload(params={"opset": 17, "dynamic": True}, tools={"a": "1", "b": "2"})
    b = payload(params={"dynamic": True, "opset": 17}, tools={"b": "2", "a": "1"})
    assert cache_key(a) == cache_key(b)


def test_tuple_and_list_give_same_key() -> None:
    assert cache_key(payload(params={"s": (1, 8)})) == cache_key(payload(params={"s": [1, 8]}))


def test_every_field_changes_key() -> None:
    base = cache_key(payload())
    variants = [
        payload(step="X"),
        payload(step_version=2),
        payload(params={"opset": 18}),
        payload(inputs={"model": "b" * 64}),
        payload(tools={"torch": "2.14.0"}),
        payload(hardware={"cpu_model": "A"}),
    ]
    assert len({cache_key(v) for v in variants} | {base}) == len(variants) + 1


def test_explain_never_built_and_equal() -> None:
    assert explain_change(None, payload()) == ["never built"]
    assert explain_change(payload(), payload()) == []


def test_explain_schema_step_and_version() -> None:
    old = payload()
    old["schema"] = 1
    new = payload(step="TorchScriptFromTorch", step_version=2)
    new["schema"] = 2
    assert explain_change(old, new) == [
        "key schema 1 -> 2",
        "step OnnxFromTorch -> TorchScriptFromTorch",
        "step version 1 -> 2",
    ]


def test_explain_params_nested_lists_added_removed() -> None:
    old = payload(params={"opset": 17, "shapes": {"x": [1, 8]}, "gone": "yes"})
    new = payload(params={"opset": 18, "shapes": {"x": [1, 4]}, "new": 3})
    assert explain_change(old, new) == [
        "params.gone: yes -> (absent)",
        "params.new: (absent) -> 3",
        "params.opset: 17 -> 18",
        "params.shapes.x: [1, 8] -> [1, 4]",
    ]


def test_explain_int_vs_float_param_is_a_change() -> None:
    # 1 and 1.0 encode differently, so the key changes and the reason must say so.
    assert explain_change(payload(params={"t": 1}), payload(params={"t": 1.0})) == [
        "params.t: 1 -> 1.0"
    ]


def test_explain_inputs() -> None:
    old = payload(inputs={"onnx": "a" * 64, "reference": "c" * 64})
    new = payload(inputs={"onnx": "b" * 64, "samples": "d" * 64})
    assert explain_change(old, new) == [
        "input onnx changed",
        "input reference removed",
        "input samples added",
    ]


def test_explain_tools() -> None:
    old = payload(tools={"onnxruntime": "1.21.0", "onnx": "1.17.0"})
    new = payload(tools={"onnxruntime": "1.22.0", "tensorrt": "10.0"})
    assert explain_change(old, new) == [
        "onnx 1.17.0 -> (absent)",
        "onnxruntime 1.21.0 -> 1.22.0",
        "tensorrt (absent) -> 10.0",
    ]


def test_explain_hardware() -> None:
    a = {"cpu_model": "A", "gpu": "H100", "driver": "550"}
    b = {"cpu_model": "B", "gpu": "H100", "driver": "560"}
    assert explain_change(payload(hardware=a), payload(hardware=b)) == [
        "hardware changed: cpu_model A -> B",
        "hardware changed: driver 550 -> 560",
    ]
    assert explain_change(payload(), payload(hardware=a)) == ["hardware added"]
    assert explain_change(payload(hardware=a), payload()) == ["hardware removed"]


def test_explain_order_is_fixed() -> None:
    old = payload()
    new = payload(hardware={"cpu_model": "A"}, tools={"torch": "3"}, params={}, step_version=9)
    reasons = explain_change(old, new)
    assert reasons[0] == "step version 1 -> 9"
    assert reasons[-1] == "hardware added"
    assert explain_change(old, new) == reasons


def test_tool_versions_and_its_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    keys._version_of.cache_clear()
    calls: list[str] = []
    real = keys.importlib.metadata.version

    def spy(name: str) -> str:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(keys.importlib.metadata, "version", spy)
    got = tool_versions(["pytest", "surely-not-installed-dist"])
    assert got["pytest"] == real("pytest")
    assert got["surely-not-installed-dist"] == "not installed"
    tool_versions(["pytest"])
    assert calls.count("pytest") == 1
    keys._version_of.cache_clear()
