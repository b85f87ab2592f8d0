"""An unknown field in an APIEndpoint spec offers the closest real one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller import models

BASE = {"path": "/a", "backendService": "x"}


def messages(spec: dict) -> list[str]:
    with pytest.raises(ValidationError) as e:
        models.APIEndpointSpec.model_validate(spec)
    return models.describe_errors(e.value)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ({"path": "/a", "pathtype": "Prefix", "backendService": "x"}, "spec.pathtype: unknown field; did you mean `pathType`?"),
        ({"path": "/a", "backendservice": "x"}, "spec.backendservice: unknown field; did you mean `backendService`?"),
        ({"path": "/a", "backends": [{"service": {"name": "x", "prot": 80}}]},
         "spec.backends[0].service.prot: unknown field; did you mean `port`?"),
        ({**BASE, "auth": {"type": "APIKey", "secretref": {"name": "k"}}},
         "spec.auth.secretref: unknown field; did you mean `secretRef`?"),
        ({**BASE, "headers": [{"name": "a", "value": "b", "tpye": "Exact"}]},
         "spec.headers[0].tpye: unknown field; did you mean `type`?"),
    ],
)
def test_a_misspelt_field_gets_the_closest_name(spec, expected):
    assert expected in messages(spec)


def test_nothing_close_means_no_suggestion():
    assert messages({**BASE, "zzzz": 1}) == ["spec.zzzz: unknown field"]
