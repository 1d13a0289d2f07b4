"""Only a missing alias lets evaluation move `@champion`; any other registry error is raised."""
from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (INTERNAL_ERROR, INVALID_PARAMETER_VALUE, PERMISSION_DENIED,
                                          RESOURCE_DOES_NOT_EXIST)

from jobs.evaluate import alias_holder


class _Registry:
    def __init__(self, exc: Exception | None, version: int = 3) -> None:
        self.exc, self.version = exc, version

    def get_model_version_by_alias(self, name: str, alias: str):
        if self.exc is not None:
            raise self.exc
        return type("Version", (), {"version": self.version})()


def test_missing_alias_means_no_holder() -> None:
    exc = MlflowException("Registered model alias champion not found.", error_code=INVALID_PARAMETER_VALUE)
    assert alias_holder(_Registry(exc), "a2u-matting", "champion") is None
    assert alias_holder(_Registry(None), "a2u-matting", "champion") == "3"


@pytest.mark.parametrize("exc", [
    MlflowException("API request failed with error code 403: permission denied", error_code=PERMISSION_DENIED),
    MlflowException("Internal error", error_code=INTERNAL_ERROR),
    MlflowException("Registered Model with name=a2u-matting not found", error_code=RESOURCE_DOES_NOT_EXIST),
])
def test_other_registry_errors_are_raised(exc: MlflowException) -> None:
    with pytest.raises(MlflowException):
        alias_holder(_Registry(exc), "a2u-matting", "champion")
