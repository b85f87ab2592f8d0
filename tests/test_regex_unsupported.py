"""A pattern RE2 refuses by design (backreferences, lookaround) says so in plain words."""

from __future__ import annotations

import pytest

from gateway import regex

PLAIN = "RE2, the linear-time engine crdgate matches with, has no backreferences or lookaround"


@pytest.mark.parametrize("pattern", [r"(a)\1", r"/x/(\d+)/\1", r"(?=x)", r"(?!x)y", r"(?<=x)a", r"(?<!x)a",
                                     r"(?P<n>a)(?P=n)", r"(?<n>a)\k<n>"])
def test_backreferences_and_lookaround_are_named(pattern):
    with pytest.raises(regex.RegexError) as e:
        regex.compile(pattern)
    assert PLAIN in str(e.value)


@pytest.mark.parametrize("pattern, reason", [("[a", "missing ]: [a"), (r"\Z", r"invalid escape sequence: \Z")])
def test_other_errors_keep_re2s_reason_alone(pattern, reason):
    with pytest.raises(regex.RegexError) as e:
        regex.compile(pattern)
    assert str(e.value) == reason


def test_the_status_of_an_apiendpoint_carries_it():
    from controller import models
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        models.APIEndpointSpec.model_validate(
            {"path": r"/(a)\1", "pathType": "RegularExpression", "backendService": "x"})
    (message,) = models.describe_errors(e.value)
    assert message.startswith(r"spec.path: invalid regular expression: invalid escape sequence: \1 (")
    assert PLAIN in message
