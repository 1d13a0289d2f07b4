"""`python -m data_prep <command>`: see `data_prep.cli`."""
import sys

# data_prep never needs PyTorch, but `import webdataset` pulls it in (seconds of start-up on a busy 2-core box).
# webdataset falls back to its torch-free stand-ins when torch is not importable, so keep it out of this
# CLI process (and its forked workers). Library users importing data_prep are unaffected.
if "torch" not in sys.modules:
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ModuleNotFoundError

from .cli import main  # noqa: E402

sys.exit(main())
