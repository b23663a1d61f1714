"""Inference runtimes outside PyTorch: ONNX Runtime (CPU, CUDA, TensorRT providers) and OpenVINO (CPU).

Both consume the cached ONNX export (see onnx_export.py). Their calls block until the result exists.
On a GPU, ONNX Runtime's CUDA and TensorRT providers are given PyTorch's current stream as their compute
stream (`user_compute_stream`), so the CUDA events that time every backend bracket their kernels too, and
an input PyTorch wrote is finished before they read it. fp32 is fp32: TF32 is off (`use_tf32=0`, and
NVIDIA_TF32_OVERRIDE=0 for TensorRT, set by the worker) unless the cell asks for tf32.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..devices import storage_precision
from .base import TORCH_DTYPES, Backend, BackendOptions, BackendUnavailable, PrecisionUnsupported, require_module
from .onnx_export import DEFAULT_OPSET, EXPORT_INPUT, cache_dir, export_onnx
from .quantization import CalibrationSet, cpu_flags, int8_cpu_reason

# onnxruntime.calibration_method -> onnxruntime.quantization.CalibrationMethod
ORT_CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}

# ------------------------------------------------------------------------------------- ONNX Runtime


@dataclass(frozen=True)
class OnnxRuntimeOptions(BackendOptions):
    opset: int = DEFAULT_OPSET
    graph_optimization: str = "all"  # disable | basic | extended | all
    io_binding: bool = True  # CUDA: input and output stay on the GPU (no host copies in the timed call)
    # int8 (static QDQ quantization, onnxruntime.quantization.quantize_static): how activation ranges are
    # calibrated (minmax | entropy | percentile) and whether weights get one scale per output channel
    calibration_method: str = "minmax"
    per_channel: bool = True


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with its CPU or CUDA execution provider."""

    name = "onnxruntime"
    options_type = OnnxRuntimeOptions
    blocking = True
    provider_by_device = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
    # onnx: PyTorch's ONNX exporter writes the file through it
    requires = (("onnxruntime", "onnxruntime (CPU) or onnxruntime-gpu (CUDA)"), ("onnx", "onnx"))
    quantized_precisions = ("int8",)  # static QDQ int8 on the CPU provider

    @classmethod
    def unavailable_reason(cls, device: torch.device) -> str | None:
        reason = super().unavailable_reason(device)
        if reason:
            return reason
        import onnxruntime as ort

        provider = cls._provider(device)
        if provider not in ort.get_available_providers():
            return (f"this onnxruntime build has no {provider} (it has {', '.join(ort.get_available_providers())})"
                    + ("; for CUDA install onnxruntime-gpu" if device.type == "cuda" else ""))
        return None

    @classmethod
    def _provider(cls, device: torch.device) -> str:
        return cls.provider_by_device[device.type]

    def unsupported_reason(self) -> str | None:
        if self.precision == "int8":
            if self.device.type != "cpu":
                return (f"dnnbench quantizes ONNX Runtime graphs to int8 for the CPU provider only; "
                        f"not {self._provider(self.device)}")
            if self.options.calibration_method not in ORT_CALIBRATION_METHODS:
                return (f"onnxruntime.calibration_method {self.options.calibration_method!r} is not one of "
                        f"{', '.join(ORT_CALIBRATION_METHODS)}")
            return int8_cpu_reason(cpu_flags())
        if self.device.type == "cpu" and self.precision != "fp32":
            return (f"ONNX Runtime's CPU provider has no {self.precision} convolution kernels; "
                    "fp32, or int8 (quantized)")
        if self.precision == "bf16":
            return f"{self._provider(self.device)} does not run bf16 graphs from the PyTorch exporter; fp32 or fp16"
        return None

    def graph_precision(self) -> str:
        """The precision of the exported ONNX graph, and so of the input bound to it (int8: the fp32 graph,
        quantized after export; it takes fp32 input)."""
        return storage_precision(self.precision)

    def _cuda_options(self) -> dict[str, Any]:
        """ONNX Runtime's CUDA provider options: fp32 without TF32 unless the cell is tf32 (ORT's default is
        use_tf32=1), and PyTorch's current stream as the compute stream (see the module docstring)."""
        return {"device_id": self.device.index or 0, "use_tf32": int(self.tf32),
                "user_compute_stream": str(torch_stream_pointer(self.device))}

    def _providers(self) -> list[Any]:
        provider = self._provider(self.device)
        if provider == "CPUExecutionProvider":
            return [provider]
        return [(provider, self._cuda_options())]

    def prepare(self, model: torch.nn.Module, example: torch.Tensor, key: str) -> None:
        require_module("onnxruntime", "onnxruntime")
        dtype = TORCH_DTYPES[self.graph_precision()]
        model = model.to(dtype)
        with self.setup.timed("export_s"):
            self.onnx_path, cached = export_onnx(model, example.to(dtype), key, self.options.opset)
        self.export_cached = cached
        graph: str | bytes = str(self.onnx_path)
        if self.precision == "int8":
            with self.setup.timed("quantize_s"):  # calibration runs and QDQ insertion: a set-up phase of its own
                graph = self.quantize_graph(self.onnx_path)
        self.open_session(graph)

    def open_session(self, graph: str | bytes) -> None:
        """The inference session of `graph` (a file, or a serialised model: the quantized one)."""
        import onnxruntime as ort

        options = self._session_options(self.threads or torch.get_num_threads())
        self.provider_options = self._providers()
        with self.setup.timed("session_s"):
            self.session = ort.InferenceSession(graph, options, providers=self.provider_options)
        used = self.session.get_providers()[0]
        if used != self._provider(self.device):
            raise BackendUnavailable(f"ONNX Runtime fell back to {used} instead of {self._provider(self.device)}")
        self.executed_precision = self.precision
        self.input_name = self.session.get_inputs()[0].name
        self.graph = graph  # for stream_pool's sessions

    def _session_options(self, intra_op_threads: int) -> Any:
        """The session options of every session this backend opens: the graph optimisation asked for, operators
        run one after another, `intra_op_threads` threads inside each."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.options.graph_optimization]
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        return options

    def quantize_graph(self, fp32_path: Path) -> bytes:
        """The exported fp32 graph quantized to int8 by ONNX Runtime's own static quantization: shape inference
        and graph clean-up (quant_pre_process), then QuantizeLinear/DequantizeLinear pairs (QDQ) around every
        convolution and matrix multiplication, activations uint8 with ranges calibrated on the calibration
        images, weights int8 (per output channel by default), the format ONNX Runtime recommends for CPUs."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        calibration = self._calibration()
        folder = Path(tempfile.mkdtemp(prefix="dnnbench-ort-int8-"))
        try:
            prepared, quantized = folder / "prepared.onnx", folder / "int8.onnx"
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            activations, extra_options = self.qdq_recipe()
            quantize_static(str(prepared), str(quantized), calibration_reader(EXPORT_INPUT, calibration),
                            quant_format=QuantFormat.QDQ, activation_type=getattr(QuantType, activations),
                            weight_type=QuantType.QInt8, per_channel=self.options.per_channel,
                            calibrate_method=getattr(CalibrationMethod,
                                                     ORT_CALIBRATION_METHODS[self.options.calibration_method]),
                            extra_options=extra_options)
            graph = quantized.read_bytes()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.quantized_nodes = count_quantized_nodes(graph)
        if not self.quantized_nodes:
            raise PrecisionUnsupported("ONNX Runtime's quantizer left no operator quantized; not measured as int8")
        return graph

    def qdq_recipe(self) -> tuple[str, dict[str, Any]]:
        """The activation type (a QuantType name) and quantize_static's extra options: ONNX Runtime's CPU
        recipe, uint8 activations with a zero point (its u8s8 kernels)."""
        return "QUInt8", {}

    def load_quantizer(self) -> None:
        require_module("onnxruntime.quantization", "onnxruntime")

    def quantization_settings(self) -> dict[str, Any]:
        activations, extra_options = self.qdq_recipe()
        return {"quantizer": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                "activations": {"QUInt8": "uint8", "QInt8": "int8"}[activations], "weights": "int8",
                "per_channel": self.options.per_channel, "calibration_range": self.options.calibration_method,
                "extra_options": extra_options, "quantized_operators": getattr(self, "quantized_nodes", None)}

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        x = x.to(TORCH_DTYPES[self.graph_precision()])
        session = self.session
        if self.device.type == "cpu" or not self.options.io_binding:
            feed = {self.input_name: x.cpu().numpy()}
            return lambda: session.run(None, feed)
        import numpy as np

        x = x.contiguous()
        # the cast and copy above are queued on PyTorch's stream: finished before ONNX Runtime reads the pointer
        synchronize_stream(self.device)
        binding = session.io_binding()
        element_type = {torch.float32: np.float32, torch.float16: np.float16}[x.dtype]
        binding.bind_input(self.input_name, self.device.type, self.device.index or 0, element_type, tuple(x.shape),
                           x.data_ptr())
        binding.bind_output(session.get_outputs()[0].name, self.device.type, self.device.index or 0)
        self._keep_alive = x  # the binding holds a raw pointer into this tensor

        def forward() -> Any:
            session.run_with_iobinding(binding)  # synchronises the provider's stream before returning
            return binding
        return forward

    def outputs(self, x: torch.Tensor) -> torch.Tensor:
        feed = {self.input_name: x.to(TORCH_DTYPES[self.graph_precision()]).cpu().numpy()}
        return torch.as_tensor(self.session.run(None, feed)[0]).float()

    def stream_pool(self, x: torch.Tensor, streams: int, threads_per_stream: int | None):
        """One session (intra-op threads = `threads_per_stream`) run from one Python thread per stream, as ONNX
        Runtime documents for concurrent requests (`run` releases the GIL). CPU provider only: the GPU providers
        share PyTorch's one compute stream (user_compute_stream), so their requests would not overlap."""
        from .streams import ConcurrencyUnsupported, ThreadStreamPool

        if self.device.type != "cpu":
            raise ConcurrencyUnsupported(f"{self.name} on {self.device.type} runs on PyTorch's one compute stream "
                                         "(user_compute_stream): requests in flight would not overlap; CPU only")
        import onnxruntime as ort

        sessions = self.__dict__.setdefault("_stream_sessions", {})
        if threads_per_stream not in sessions:
            options = self._session_options(threads_per_stream or self.session.get_session_options().intra_op_num_threads)
            with self.setup.timed(f"session_s@{threads_per_stream}-threads"):
                sessions[threads_per_stream] = ort.InferenceSession(self.graph, options, providers=self.provider_options)
        session = sessions[threads_per_stream]
        feed = {self.input_name: x.to(TORCH_DTYPES[self.graph_precision()]).cpu().numpy()}
        return ThreadStreamPool(streams, threads_per_stream, lambda index: (lambda: session.run(None, feed)),
                                concurrency="onnxruntime-session-threads")

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        described.update(provider=self._provider(self.device), onnx_file=str(self.onnx_path),
                         export_cached=self.export_cached,
                         intra_op_threads=self.threads or torch.get_num_threads(),
                         graph_precision=self.graph_precision(),
                         provider_options=[_recordable(p) for p in getattr(self, "provider_options", [])])
        if self.device.type == "cuda":  # TensorRT's TF32 switch (set by the worker; see the module docstring)
            described["nvidia_tf32_override"] = os.environ.get("NVIDIA_TF32_OVERRIDE")
        return described

    def versions(self) -> dict[str, str]:
        import onnxruntime

        return {**super().versions(), "onnxruntime": onnxruntime.__version__}


@dataclass(frozen=True)
class TensorRTOptions(OnnxRuntimeOptions):
    workspace_mb: int = 2048


class TensorRTBackend(OnnxRuntimeBackend):
    """NVIDIA TensorRT through ONNX Runtime's TensorRT execution provider (onnxruntime-gpu built with it).
    The engine is built at the first run of each batch size: the engine's timed first inference.

    int8 is TensorRT's explicit quantization: the fp32 export is quantized by ONNX Runtime's quantize_static
    into a QDQ graph in the form TensorRT requires (signed int8 activations and weights, zero points 0, which
    its int8 tensor-core kernels need; fp32 biases; one Q/DQ pair per consumer), calibrated on the cell's
    calibration images; TensorRT builds the engine from the Q/DQ nodes (trt_int8_enable, no calibration
    table: TensorRT refuses one for a graph with Q/DQ nodes), with fp16 allowed for what stays unquantized."""

    name = "tensorrt"
    options_type = TensorRTOptions
    compiles_at_first_call = True
    device_types = ("cuda",)
    provider_by_device = {"cuda": "TensorrtExecutionProvider"}
    quantized_precisions = ("int8",)

    def unsupported_reason(self) -> str | None:
        if self.precision == "int8":
            if self.options.calibration_method not in ORT_CALIBRATION_METHODS:
                return (f"tensorrt.calibration_method {self.options.calibration_method!r} is not one of "
                        f"{', '.join(ORT_CALIBRATION_METHODS)}")
            return int8_cuda_reason(self.device)
        if self.precision == "bf16":
            return ("dnnbench drives TensorRT through ONNX Runtime in fp32, fp16 (its trt_fp16_enable flag) or int8 "
                    "(trt_int8_enable), not bf16")
        return None

    def qdq_recipe(self) -> tuple[str, dict[str, Any]]:
        return "QInt8", {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                         "DedicatedQDQPair": True, "AddQDQPairToWeight": True}

    def open_session(self, graph: str | bytes) -> None:
        if isinstance(graph, bytes):
            # the quantized graph goes to TensorRT as a file, as the fp32 export does, named by its digest: an
            # engine cached for other calibration images (other scales) is never taken for this graph's
            path = self.onnx_path.with_name(f"{self.onnx_path.stem}-int8-qdq-{hashlib.sha256(graph).hexdigest()[:16]}.onnx")
            path.write_bytes(graph)
            graph = str(path)
        super().open_session(graph)

    def quantization_settings(self) -> dict[str, Any]:
        return {**super().quantization_settings(), "engine": "TensorRT explicit quantization (Q/DQ), fp16 allowed"}

    def graph_precision(self) -> str:
        # TensorRT builds its own fp16 engine from the fp32 graph (trt_fp16_enable): the graph, and the
        # input bound to it, stay fp32 at every precision
        return "fp32"

    def _providers(self) -> list[Any]:
        # engines built with and without fp16 or TF32 are different engines: one cache folder each
        mode = self.precision if self.precision != "fp32" else ("tf32" if self.tf32 else "fp32")
        engine_cache = cache_dir() / "tensorrt" / mode
        engine_cache.mkdir(parents=True, exist_ok=True)
        cuda = self._cuda_options()
        trt = {"device_id": cuda["device_id"], "trt_fp16_enable": self.precision in ("fp16", "int8"),
               "trt_int8_enable": self.precision == "int8",
               "trt_max_workspace_size": self.options.workspace_mb * 2**20, "trt_engine_cache_enable": True,
               "trt_engine_cache_path": str(engine_cache), "user_compute_stream": cuda["user_compute_stream"]}
        return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", cuda)]


def int8_cuda_reason(device: torch.device) -> str | None:
    """Why TensorRT cannot run int8 on this GPU (None: it can): int8 kernels need compute capability 6.1."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None  # the provider's own availability says why not
    capability = torch.cuda.get_device_capability(device)
    if capability < (6, 1):
        return f"TensorRT's int8 kernels need compute capability 6.1 or later; this GPU has {capability[0]}.{capability[1]}"
    return None


def torch_stream_pointer(device: torch.device) -> int:
    """The raw cudaStream_t of PyTorch's current stream on `device` (ONNX Runtime's user_compute_stream)."""
    return torch.cuda.current_stream(device).cuda_stream


def synchronize_stream(device: torch.device) -> None:
    """Wait until the work queued on PyTorch's current stream of `device` is done."""
    torch.cuda.current_stream(device).synchronize()


def _recordable(provider: Any) -> Any:
    """A provider entry for the record: the stream pointer is an address of this process, not a setting."""
    if isinstance(provider, tuple):
        name, options = provider
        return [name, {k: v for k, v in options.items() if k != "user_compute_stream"}]
    return provider


def calibration_reader(input_name: str, calibration: CalibrationSet) -> Any:
    """An onnxruntime.quantization.CalibrationDataReader over the calibration images, one at a time."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.batches())

        def get_next(self) -> dict[str, Any] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch.numpy()}

    return Reader()


def count_quantized_nodes(graph: bytes) -> int:
    """How many QuantizeLinear nodes a serialised ONNX graph holds (0: nothing was quantized)."""
    import onnx

    return sum(node.op_type == "QuantizeLinear" for node in onnx.load_model_from_string(graph).graph.node)


# ----------------------------------------------------------------------------------------- OpenVINO

# int8: the quantized model's other operations stay fp32 (not bf16, which OpenVINO would pick on CPUs that have it)
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
OV_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16", "int8": "INT8"}
# the OpenVINO CPU plug-in's layer types that carry a network's arithmetic, counted when they run in int8
OV_INT8_LAYERS = frozenset({"Convolution", "GroupConvolution", "FullyConnected", "MatMul", "Deconvolution"})


@dataclass(frozen=True)
class OpenVINOOptions(BackendOptions):
    source: str = "onnx"  # onnx: the cached ONNX export; pytorch: openvino.convert_model on the module
    opset: int = DEFAULT_OPSET
    performance_hint: str = "LATENCY"  # LATENCY | THROUGHPUT (one stream is timed either way)


class OpenVINOBackend(Backend):
    """OpenVINO on the CPU, one static shape per batch size (compiled in `bind`, recorded as compile_s@B;
    `release_shapes` drops the compiled models of earlier shapes, each a copy of the weights).
    OpenVINO would pick bf16 by itself on CPUs that have it: the precision hint is always set, and the
    precision the compiled model reports is recorded; a mismatch is refused, never measured.
    int8: the converted model is quantized by NNCF (`nncf.quantize`), compiled with the fp32 hint for what stays
    unquantized, and refused unless its runtime model runs convolutions in int8."""

    name = "openvino"
    options_type = OpenVINOOptions
    device_types = ("cpu",)
    blocking = True
    # onnx: the default source is the ONNX export (openvino.source=pytorch needs none)
    requires = (("openvino", "openvino"), ("onnx", "onnx"))
    quantized_precisions = ("int8",)  # NNCF post-training quantization of the converted model

    @classmethod
    def unavailable_reason(cls, device: torch.device) -> str | None:
        reason = super().unavailable_reason(device)
        if reason:
            return reason
        if "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
            return "OpenVINO crashes with tcmalloc preloaded here (LD_PRELOAD); run it with glibc malloc or jemalloc"
        return None

    def unsupported_reason(self) -> str | None:
        reason = super().unsupported_reason()
        if reason:
            return reason
        ov = require_module("openvino", "openvino")
        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if OV_CAPABILITY[self.precision] not in capabilities:
            return (f"this CPU offers OpenVINO {', '.join(capabilities)}; no {OV_CAPABILITY[self.precision]} "
                    f"(bf16 needs AVX512-BF16 or AMX, fp16 AVX512-FP16/AMX-FP16 or ARM)")
        if self.precision == "int8":
            try:
                require_module("nncf", "nncf")
            except BackendUnavailable as exc:
                return f"OpenVINO int8 is quantized with NNCF: {exc}"
            return int8_cpu_reason(cpu_flags())
        return None

    def prepare(self, model: torch.nn.Module, example: torch.Tensor, key: str) -> None:
        ov = require_module("openvino", "openvino")
        self.core = ov.Core()
        if self.options.source == "onnx":
            with self.setup.timed("export_s"):
                path, self.export_cached = export_onnx(model, example, key, self.options.opset)
            with self.setup.timed("convert_s"):
                self.ov_model = self.core.read_model(str(path))
            self.source_file = str(path)
        else:
            self.export_cached, self.source_file = False, None
            with self.setup.timed("convert_s"):
                self.ov_model = ov.convert_model(model, example_input=example)
        if self.precision == "int8":
            with self.setup.timed("quantize_s"):  # NNCF's calibration and quantization: a set-up phase of its own
                self.ov_model = self._quantize(self.ov_model)
        self.compiled: dict[int, Any] = {}

    def _quantize(self, ov_model: Any) -> Any:
        """`ov_model` quantized to int8 by NNCF's post-training quantization (`nncf.quantize`, its default
        mixed preset: symmetric int8 weights per output channel, activations calibrated on the calibration
        images, fast bias correction), the path OpenVINO documents for int8 on CPUs."""
        nncf = require_module("nncf", "nncf")
        calibration = self._calibration()
        dataset = nncf.Dataset([batch.numpy() for batch in calibration.batches()])
        return nncf.quantize(ov_model, dataset, subset_size=calibration.samples)

    def load_quantizer(self) -> None:
        require_module("nncf", "nncf")

    def quantization_settings(self) -> dict[str, Any]:
        import nncf

        return {"quantizer": "nncf.quantize", "nncf": nncf.__version__, "preset": "default (performance)",
                "int8_layers": getattr(self, "int8_layers", None)}

    def _config(self) -> dict[str, Any]:
        config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[self.precision],
                  "PERFORMANCE_HINT": self.options.performance_hint, "NUM_STREAMS": 1}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        return config

    def _compile(self, shape: tuple[int, ...]) -> Any:
        if shape not in self.compiled:
            compiled = self._compile_shape(shape, self._config(), f"compile_s@{shape[0]}")
            executed = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
            executed = {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "f16": "fp16",
                        "float16": "fp16"}.get(executed.split("'")[1] if "'" in executed else executed, executed)
            if executed != storage_precision(self.precision):
                raise PrecisionUnsupported(f"OpenVINO compiled {self.precision} as {executed}; not measured")
            if self.precision == "int8":
                self.int8_layers = int8_layers(compiled)
                if not self.int8_layers:
                    raise PrecisionUnsupported("OpenVINO compiled the quantized model without a single int8 "
                                               "convolution or matrix multiplication; not measured as int8")
                executed = "int8"
            self.executed_precision = executed
            self.compiled[shape] = compiled
        return self.compiled[shape]

    def _compile_shape(self, shape: tuple[int, ...], config: dict[str, Any], step: str) -> Any:
        """The model reshaped to `shape` and compiled for the CPU plug-in with `config`, timed as set-up `step`."""
        with self.setup.timed(step):
            model = self.ov_model.clone()
            model.reshape(list(shape))
            return self.core.compile_model(model, "CPU", config)

    def release_shapes(self) -> None:
        self.compiled.clear()
        self._keep_alive = None
        import gc

        gc.collect()  # a request or tensor left in a reference cycle would keep its compiled model

    def bind(self, x: torch.Tensor) -> Callable[[], Any]:
        import openvino as ov

        array = x.float().cpu().contiguous().numpy()
        request = self._compile(tuple(array.shape)).create_infer_request()
        request.set_input_tensor(ov.Tensor(array, shared_memory=True))
        self._keep_alive = array

        def forward() -> Any:
            request.infer()
            return request.get_output_tensor(0).data
        return forward

    def stream_pool(self, x: torch.Tensor, streams: int, threads_per_stream: int | None):
        """OpenVINO's AsyncInferQueue with `streams` requests on a model compiled for this shape with the
        throughput hint, NUM_STREAMS = streams and INFERENCE_NUM_THREADS = streams x threads_per_stream."""
        from .streams import AsyncInferQueuePool

        array = x.float().cpu().contiguous().numpy()
        config = {**self._config(), "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
        if threads_per_stream:
            config["INFERENCE_NUM_THREADS"] = streams * threads_per_stream
        compiled = self._compile_shape(tuple(array.shape), config, f"compile_s@{array.shape[0]}x{streams}-streams")
        # the precision checked by `_compile` (the one-stream model bound first) is the one these streams run
        reference = next(iter(self.compiled.values()), None) or self._compile(tuple(array.shape))
        wanted = str(reference.get_property("INFERENCE_PRECISION_HINT"))
        if str(compiled.get_property("INFERENCE_PRECISION_HINT")) != wanted:
            raise PrecisionUnsupported(f"OpenVINO compiled the {streams}-stream model at "
                                       f"{compiled.get_property('INFERENCE_PRECISION_HINT')}, not {wanted}")
        return AsyncInferQueuePool(compiled, array, streams, threads_per_stream)

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        described.update(config=self._config(), source_file=self.source_file, export_cached=self.export_cached)
        return described

    def versions(self) -> dict[str, str]:
        import openvino

        return {**super().versions(), "openvino": openvino.__version__}


def int8_layers(compiled: Any) -> int:
    """How many convolutions and matrix multiplications OpenVINO's compiled model runs in int8 (its runtime
    model's `runtimePrecision` of each layer): what was quantized is really executed in int8."""
    count = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        keys = set(info.keys())
        layer = info["layerType"].astype(str) if "layerType" in keys else ""
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in keys else ""
        if layer in OV_INT8_LAYERS and precision.lower() in ("i8", "u8"):
            count += 1
    return count
