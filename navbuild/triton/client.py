"""A runner that sends feeds to a model served by Triton (tritonclient HTTP or gRPC) and returns its outputs."""

from __future__ import annotations

from typing import Mapping, Sequence

from navbuild.lazy import lazy_import

np = lazy_import("numpy")


class TritonClientRunner:
    """``run(feeds) -> outputs`` through a Triton server, like the local runners, for end-to-end checks."""

    def __init__(self, url: str, protocol: str, model: str, input_names: Sequence[str],
                 output_names: Sequence[str], timeout_s: float = 120.0) -> None:
        if protocol == "http":
            import tritonclient.http as client
            self.client = client.InferenceServerClient(url=url, network_timeout=timeout_s,
                                                       connection_timeout=timeout_s)
        elif protocol == "grpc":
            import tritonclient.grpc as client
            self.client = client.InferenceServerClient(url=url)
        else:
            raise ValueError(f"unknown protocol '{protocol}' (http, grpc)")
        self._client_module = client
        self.protocol = protocol
        self.model = model
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        from tritonclient.utils import np_to_triton_dtype

        inputs = []
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name])
            item = self._client_module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            inputs.append(item)
        outputs = [self._client_module.InferRequestedOutput(n) for n in self.output_names]
        result = self.client.infer(self.model, inputs, outputs=outputs)
        return [result.as_numpy(n) for n in self.output_names]

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            close()


__all__ = ["TritonClientRunner"]
