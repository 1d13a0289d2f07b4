# Image for Ray cluster nodes (head and workers) running a2u-matting on NVIDIA GPUs.
# CUDA 13 runtime (needs an R580+ host driver); torch 2.13.0 built for CUDA 13.0, DALI for CUDA 13.0 and the rest of
# the pinned set from requirements.txt. For hosts with older drivers use a CUDA 12 base, torch's cu12x index and
# nvidia-dali-cuda120 (see README).
FROM nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

# Python 3.11 (the version the pins are resolved for) from the deadsnakes PPA, with its headers and a C compiler:
# Triton builds its kernel launcher with them on first use (the fused A2U kernels and torch.compile need it).
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common ca-certificates curl \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY requirements.txt .
# torch first, the CUDA build of the pinned version; the rest of the pinned closure then finds it satisfied.
RUN pip install "$(grep '^torch==' requirements.txt)" --index-url https://download.pytorch.org/whl/cu130 \
 && pip install -r requirements.txt \
 && python -c "import torch, nvidia.dali, ray, mlflow; print(torch.__version__, ray.__version__, mlflow.__version__)"

COPY . .

# Smoke step: Triton's CUDA driver imports, and a Python C extension builds the way Triton builds its launcher
# (the launcher itself also links libcuda, which only a GPU host provides at run time).
RUN python -c "import triton, triton.backends.nvidia.driver; print('triton', triton.__version__)" \
 && printf '#include <Python.h>\nint a2u_smoke(void) { return Py_IsInitialized(); }\n' > /tmp/smoke.c \
 && gcc -shared -fPIC $(python3.11-config --includes) /tmp/smoke.c -o /tmp/smoke.so && rm /tmp/smoke.*

# Ray ships the repository as the job's working_dir anyway; this copy lets nodes run `python -m jobs ...` directly.
EXPOSE 6379 8265 10001
CMD ["bash"]
