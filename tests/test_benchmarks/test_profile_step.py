"""benchmarks/profile_step.py: the step profile the GPU check uses to say where a training step's time goes."""
from __future__ import annotations

import math

import pytest

from benchmarks.profile_step import _union_us, category, profile_training_step


@pytest.mark.parametrize("name,want", [
    ("sm90_xmma_fprop_implicit_gemm_bf16bf16_bf16f32_f32_nhwckrsc_nhwc_tilesize128x128x64", "convolution / matmul"),
    ("void cudnn::bn_fw_tr_1C11_kernel_NCHW<__nv_bfloat16, float, 512, true, 1>", "batch norm"),
    ("void at::native::batch_norm_collect_statistics_channels_last_kernel<float>", "batch norm"),
    ("up_grad_m_kernel", "a2u reassembly"),
    ("down_fwd_kernel", "a2u reassembly"),
    ("void at::native::(anonymous namespace)::fused_adam_kernel<float>", "optimizer"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::leaky_relu_kernel>", "elementwise"),
    ("void nchwToNhwcKernel<__nv_bfloat16>", "layout / copy"),
    ("aten::mkldnn_convolution", "convolution / matmul"),
    ("aten::_softmax", "softmax"),
    ("something_unheard_of", "other"),
])
def test_kernel_names_fall_into_their_category(name, want):
    assert category(name) == want


def test_busy_time_is_the_union_of_kernel_intervals():
    assert _union_us([(0, 10), (5, 12), (20, 25), (21, 22)]) == 17
    assert _union_us([]) == 0


def test_cpu_profile_of_a_small_step_adds_up():
    result = profile_training_step(batch=2, crop=64, device="cpu", warmup=1, steps=1, iters=1, top=5)
    total = result["op_cpu_ms_per_step"]
    assert total > 0 and result["wall_ms_per_step"] > 0
    # every operator's own time lands in exactly one category and one phase
    assert math.isclose(sum(result["categories_ms_per_step"].values()), total, rel_tol=1e-3, abs_tol=0.05)
    assert math.isclose(sum(result["phases_ms_per_step"].values()), total, rel_tol=1e-3, abs_tol=0.05)
    assert result["categories_ms_per_step"]["convolution / matmul"] > 0
    assert result["conv_matmul_tflop_per_step"] > 0 and result["achieved_tflop_per_s"] > 0
    for p in ("forward", "loss", "backward", "optimizer"):
        assert result["phases_ms_per_step"].get(p, 0) > 0, p
    # the backward of a conv net costs more than its forward
    assert result["phases_ms_per_step"]["backward"] > result["phases_ms_per_step"]["forward"]
    assert len(result["top"]) == 5 and result["top"][0]["ms_per_step"] >= result["top"][-1]["ms_per_step"]


def test_cuda_summary_groups_kernels_by_category_phase_and_busy_time():
    """The CUDA branch of `summarise` on hand-made events shaped like the profiler's (kernels hang off the CPU
    operator that launched them; backward operators sit under the autograd engine, outside any phase label)."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import Kernel

    from benchmarks.profile_step import summarise

    def cpu(name, parent=None, kernels=()):
        return SimpleNamespace(name=name, device_type=DeviceType.CPU, is_async=False, cpu_parent=parent,
                               kernels=[Kernel(k, 0, d) for k, d in kernels], self_cpu_time_total=1.0)

    def gpu(name, start, end):
        return SimpleNamespace(name=name, device_type=DeviceType.CUDA, is_async=False, cpu_parent=None, kernels=[],
                               time_range=SimpleNamespace(start=start, end=end, elapsed_us=lambda: end - start))

    fwd = cpu("phase:forward")
    engine = cpu("autograd::engine::evaluate_function: ConvolutionBackward0")
    opt = cpu("phase:optimizer")
    events = [fwd, engine, opt,
              cpu("aten::cudnn_convolution", fwd, [("sm90_xmma_fprop_implicit_gemm", 3000.0)]),
              cpu("a2u::upsample", fwd, [("up_fwd_kernel", 1000.0)]),
              cpu("aten::convolution_backward", engine, [("sm90_xmma_dgrad", 4000.0), ("sm90_xmma_wgrad", 2000.0)]),
              cpu("aten::_fused_adam_", opt, [("fused_adam_kernel", 1000.0)]),
              gpu("sm90_xmma_fprop_implicit_gemm", 0, 3000), gpu("up_fwd_kernel", 3000, 4000),
              gpu("sm90_xmma_dgrad", 5000, 9000), gpu("sm90_xmma_wgrad", 8000, 10000),
              gpu("fused_adam_kernel", 12000, 13000)]
    result = summarise(events, steps=1, device="cuda", top=3)
    assert result["kernel_ms_per_step"] == 11.0
    assert result["busy_ms_per_step"] == 10.0  # 0–4 ms, 5–10 ms (dgrad and wgrad overlap by 1 ms), 12–13 ms
    assert result["categories_ms_per_step"] == {"convolution / matmul": 9.0, "a2u reassembly": 1.0, "optimizer": 1.0}
    assert result["phases_ms_per_step"] == {"backward": 6.0, "forward": 4.0, "optimizer": 1.0}
    assert [t["name"] for t in result["top"]] == ["sm90_xmma_dgrad", "sm90_xmma_fprop_implicit_gemm",
                                                  "sm90_xmma_wgrad"]
    assert result["count_per_step"] == 5
