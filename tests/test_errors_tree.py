"""One exception tree in one module (gateway/errors.py), the ground floor of both halves."""

import ast
import pathlib

import pytest

import gateway.errors as errors
from controller import authbuild, files, kube, kubeapi, leader, models
from controller.compile import annotations
from gateway import normalize, regex, tls
from gateway.auth import base as auth_base

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _exception_classes_defined(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)} | {b.attr for b in node.bases if isinstance(b, ast.Attribute)}
            if any(b.endswith(("Error", "Exception")) or b in {"Gone", "BadTarget"} for b in bases):
                found.append(node.name)
    return found


def test_every_public_exception_is_defined_in_gateway_errors():
    outside = []
    for root in ("gateway", "controller", "crdgate"):
        for path in sorted((ROOT / root).rglob("*.py")) if (ROOT / root).is_dir() else ():
            if path == ROOT / "gateway" / "errors.py":
                continue
            # Private control flow (the proxy's _Reject, the file source's _ParseError) stays where it is used.
            outside += [f"{path.relative_to(ROOT)}:{name}" for name in _exception_classes_defined(path) if not name.startswith("_")]
    assert outside == []


def test_the_ground_floor_imports_nothing_of_ours():
    tree = ast.parse((ROOT / "gateway" / "errors.py").read_text(encoding="utf-8"))
    modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m.split(".")[0] in ("gateway", "controller", "crdgate")]


@pytest.mark.parametrize(
    "cls, branch, builtin",
    [
        (errors.SpecError, errors.ConfigError, ValueError),
        (errors.AnnotationError, errors.ConfigError, ValueError),
        (errors.InvalidObject, errors.ConfigError, None),
        (errors.SecretContentError, errors.ConfigError, ValueError),
        (errors.CertificateError, errors.ConfigError, ValueError),
        (errors.RegexError, errors.ConfigError, ValueError),
        (errors.ManifestFolderError, errors.ConfigError, FileNotFoundError),
        (errors.KubeConfigError, errors.ConfigError, None),
        (errors.Gone, errors.ApiError, None),
        (errors.LeaseNamespaceMissing, errors.CrdgateError, None),
        (errors.BadTarget, errors.CrdgateError, None),
    ],
)
def test_tree_keeps_the_bases_callers_catch(cls, branch, builtin):
    assert issubclass(cls, branch) and issubclass(cls, errors.CrdgateError)
    if builtin is not None:
        assert issubclass(cls, builtin)


def test_modules_hand_out_the_same_classes():
    # One SpecError: the models' and the one authbuild raises for annotations are the same class.
    assert models.SpecError is authbuild.SpecError is errors.SpecError
    assert annotations.AnnotationError is errors.AnnotationError
    assert kubeapi.ApiError is errors.ApiError and kubeapi.Gone is errors.Gone
    assert kube.KubeConfigError is errors.KubeConfigError
    assert files.ManifestFolderError is errors.ManifestFolderError
    assert leader.LeaseNamespaceMissing is errors.LeaseNamespaceMissing
    assert auth_base.SecretContentError is errors.SecretContentError
    assert normalize.BadTarget is errors.BadTarget
    assert regex.RegexError is errors.RegexError
    assert tls.CertificateError is errors.CertificateError


def test_messages_are_unchanged():
    assert str(errors.SpecError(("path", "must start with '/'"), ("", "set one"))) == "path: must start with '/'; set one"
    assert str(errors.AnnotationError((("crdgate.io/x", "bad"),))) == "metadata.annotations[crdgate.io/x]: bad"
    assert str(errors.ApiError(404, "NotFound", "gone")) == "404 NotFound: gone"
    assert isinstance(errors.ApiError.from_status({"code": 410, "reason": "Expired"}), errors.Gone)
