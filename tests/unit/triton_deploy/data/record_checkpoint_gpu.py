"""Record a Model Analyzer checkpoint with GPU metrics, written by Model Analyzer's own classes and encoder."""
import json, sys
from model_analyzer.result.run_config_measurement import RunConfigMeasurement
from model_analyzer.record.types.perf_throughput import PerfThroughput
from model_analyzer.record.types.perf_latency_p99 import PerfLatencyP99
from model_analyzer.record.types.perf_latency_p95 import PerfLatencyP95
from model_analyzer.record.types.perf_latency_p90 import PerfLatencyP90
from model_analyzer.record.types.perf_latency_avg import PerfLatencyAvg
from model_analyzer.record.types.perf_server_queue import PerfServerQueue
from model_analyzer.record.types.perf_server_compute_infer import PerfServerComputeInfer
from model_analyzer.record.types.gpu_used_memory import GPUUsedMemory
from model_analyzer.record.types.gpu_utilization import GPUUtilization
from model_analyzer.record.types.gpu_power_usage import GPUPowerUsage
from model_analyzer.state.analyzer_state_manager import AnalyzerStateManager

gpus = ["GPU-0aa1", "GPU-1bb2"]
measurements = {}
for c, (tput, p99, mem, util) in {1: (410.5, 3.1, (1210.0, 1190.0), (31.0, 29.0)),
                                  4: (1502.25, 4.4, (1380.0, 1372.0), (88.0, 84.0))}.items():
    rcm = RunConfigMeasurement("minilm_onnx_cuda_config_default",
                               {g: [GPUUsedMemory(m, g), GPUUtilization(u, g), GPUPowerUsage(150.0, g)]
                                for g, m, u in zip(gpus, mem, util)})
    rcm.add_model_config_measurement("minilm_onnx_cuda_config_default", {"batch-size": 1, "concurrency-range": c},
                                     [PerfThroughput(tput), PerfLatencyP99(p99), PerfLatencyP95(p99 * 0.9),
                                      PerfLatencyP90(p99 * 0.8), PerfLatencyAvg(p99 * 0.5), PerfServerQueue(0.05),
                                      PerfServerComputeInfer(p99 * 0.4)])
    measurements[f"{{'minilm_onnx_cuda': \"{{'batch-size': 1, 'concurrency-range': {c}}}\"}}"] = rcm
state = {"ResultManager.results": {"_results": {"minilm_onnx_cuda": {
    "minilm_onnx_cuda_config_default": [{"note": "run config left out"}, measurements]}}}}
encoder = AnalyzerStateManager.default_encode
json.dump(state, open(sys.argv[1], "w"), default=lambda o: encoder(None, o), indent=1)
