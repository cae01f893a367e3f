"""Choosing the best variant: correct ones only, by objective, ties within noise to the simpler."""

from navbuild.select import choose


def fig(throughput: float, p50: float = 1.0, spread: float = 0.01) -> dict:
    return {"throughput": throughput, "spread": spread,
            "latency_ms": {"p50": p50, "p90": p50, "p95": p50, "p99": p50 * 1.2}}


def test_fastest_correct_variant_wins_at_the_largest_batch():
    variants = {"torch": {"verdict": "reference", "profile": {"1": fig(100), "8": fig(400)}},
                "onnx": {"verdict": "pass", "profile": {"1": fig(150), "8": fig(600)}},
                "onnx-opt": {"verdict": "fail", "reason": "batch 8: boom", "profile": {"1": fig(900), "8": fig(9000)}}}
    c = choose(variants, "throughput", None, "p50", 0.05)
    assert c.variant == "onnx" and c.batch_size == 8
    assert "1.50x torch" in c.why
    assert "onnx-opt (fail)" in c.why


def test_a_difference_within_noise_goes_to_the_simpler_variant():
    variants = {"onnx": {"verdict": "pass", "profile": {"8": fig(600)}},
                "onnx-opt": {"verdict": "pass", "profile": {"8": fig(620)}}}
    c = choose(variants, "throughput", 8, "p50", 0.05)
    assert c.variant == "onnx"
    assert "within noise" in c.why
    wide = {"onnx": {"verdict": "pass", "profile": {"8": fig(600)}},
            "onnx-opt": {"verdict": "pass", "profile": {"8": fig(700)}}}
    assert choose(wide, "throughput", 8, "p50", 0.05).variant == "onnx-opt"


def test_noisy_measurements_widen_the_tie_margin():
    variants = {"onnx": {"verdict": "pass", "profile": {"8": fig(600, spread=0.2)}},
                "onnx-opt": {"verdict": "pass", "profile": {"8": fig(700, spread=0.01)}}}
    assert choose(variants, "throughput", 8, "p50", 0.05).variant == "onnx"


def test_latency_objective_picks_the_lowest_percentile():
    variants = {"torch": {"verdict": "reference", "profile": {"1": fig(10, p50=5.0)}},
                "onnx": {"verdict": "pass", "profile": {"1": fig(10, p50=2.0)}}}
    c = choose(variants, "latency", 1, "p50", 0.05)
    assert c.variant == "onnx" and c.unit == "ms (p50)"


def test_no_correct_variant_means_no_choice():
    variants = {"onnx": {"verdict": "fail", "profile": {}}, "torch": {"verdict": "reference"}}
    c = choose(variants, "throughput", None, "p50", 0.05)
    assert c.variant is None
    assert "no variant is both correct and profiled" in c.why


def finalist(median: float, rounds: list[float]) -> dict:
    return {"latency_ms": median, "throughput": 8 / (median / 1000), "spread": 0.0, "rounds_ms": rounds}


def test_finalists_are_compared_round_by_round():
    from navbuild.select import choose_from_finalists

    # noisy rounds hit both alike: onnx-opt is faster in every round, by ~20%
    slow = [100, 150, 90, 200, 110, 95]
    fast = [x * 0.8 for x in slow]
    result = {"batch_size": 8, "rounds": 6, "variants": {"onnx": finalist(120, slow), "onnx-opt": finalist(96, fast)}}
    c = choose_from_finalists(result, "throughput", 0.05)
    assert c.variant == "onnx-opt" and "beyond the noise" in c.why
    # within 5% in most rounds: a tie, and the simpler onnx wins
    close = [x * 0.98 for x in slow]
    result["variants"]["onnx-opt"] = finalist(117, close)
    c = choose_from_finalists(result, "throughput", 0.05)
    assert c.variant == "onnx" and "ties with onnx-opt" in c.why
