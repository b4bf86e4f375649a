"""``resolve_device``: the one place a ``--device`` value becomes a torch device, or a one-line error."""

from __future__ import annotations

import pytest
import torch

from dsembed.errors import ConfigError, DsembedError
from dsembed.utils import device_name, resolve_device

NO_GPU = not torch.cuda.is_available()


@pytest.mark.parametrize("spec", [None, "auto", "AUTO", " auto "])
def test_auto_is_the_gpu_when_there_is_one_else_the_cpu(spec: str | None) -> None:
    assert resolve_device(spec).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("spec", ["cpu", "CPU", torch.device("cpu")])
def test_cpu(spec: object) -> None:
    assert resolve_device(spec) == torch.device("cpu")  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", ["tpu", "gpu", "cuda:x", "", "mps", "meta"])
def test_unknown_or_unsupported_devices_are_one_line_config_errors(spec: str) -> None:
    with pytest.raises(ConfigError, match="auto, cpu, cuda or cuda:N") as info:
        resolve_device(spec)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU: the no-GPU error cannot happen here")
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3", "CUDA"])
def test_cuda_without_a_gpu_is_a_one_line_error(spec: str) -> None:
    with pytest.raises(DsembedError, match="no CUDA GPU") as info:
        resolve_device(spec)
    assert isinstance(info.value, ConfigError) and "\n" not in str(info.value) and "--device cpu" in str(info.value)


@pytest.mark.skipif(NO_GPU, reason="needs a CUDA GPU")
def test_cuda_index_past_the_last_gpu_is_refused() -> None:
    assert resolve_device("cuda").type == "cuda"
    with pytest.raises(ConfigError, match="CUDA GPU"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_device_name_for_records() -> None:
    assert device_name("cpu").startswith("cpu")
    if not NO_GPU:
        assert device_name("cuda") == torch.cuda.get_device_name(0)


def test_onnx_providers_cpu_and_the_missing_cuda_provider() -> None:
    pytest.importorskip("onnxruntime")
    import onnxruntime

    from dsembed.student.onnx_backend import onnx_providers

    assert onnx_providers(None) == onnx_providers("auto") == onnx_providers("cpu") == ["CPUExecutionProvider"]
    if NO_GPU:
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            onnx_providers("cuda")
    elif "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ConfigError, match="onnxruntime-gpu"):
            onnx_providers("cuda")
    else:
        assert onnx_providers("cuda")[0][0] == "CUDAExecutionProvider"


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_bench_config_refuses_cuda_without_a_gpu() -> None:
    from dsembed.bench import BenchConfig

    with pytest.raises(ConfigError, match="no CUDA GPU"):
        BenchConfig(device="cuda").validate()
    BenchConfig(device="cpu").validate()


@pytest.mark.skipif(not NO_GPU, reason="this machine has a GPU")
def test_models_asked_for_cuda_without_a_gpu_say_so_before_reading_anything() -> None:
    from dsembed.student import DSEModel
    from dsembed.tasks import get_task
    from dsembed.teacher import Teacher

    for load in (lambda: DSEModel.load("no-such-student", device="cuda"),
                 lambda: Teacher("no-such-teacher", get_task("mrpc"), device="cuda:0")):
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            load()
