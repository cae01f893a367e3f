"""What openvino-int8-aa reads from NNCF's accuracy control log: the operations it reverted to float."""

from __future__ import annotations

from navbuild.steps.openvino_accuracy_control import reverted_operations


def test_the_reverted_operations_are_read_from_every_revert_message_once() -> None:
    log = ["Accuracy drop: 0.8 (DropType.ABSOLUTE)",
           "Changing the scope of quantizer nodes was started",
           "Reverted 2 operations to the floating-point precision: \n\t/fc2/Gemm/WithoutBiases\n\t/fc1/Gemm",
           "Accuracy drop with the new quantization scope is 0.3 (DropType.ABSOLUTE)",
           "Reverted 1 operations to the floating-point precision: \n\t/fc2/Gemm/WithoutBiases",
           "Algorithm completed: achieved required accuracy drop 0.01 (DropType.ABSOLUTE)"]
    assert reverted_operations(log) == ["/fc2/Gemm/WithoutBiases", "/fc1/Gemm"]
    assert reverted_operations(["Algorithm completed: achieved required accuracy drop 0.0"]) == []
