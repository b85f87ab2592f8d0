"""The CRD and the folder source agree on which APIEndpoints are valid.

In a cluster the API server applies the CRD's schema and CEL rules before the compiler ever
sees an object; from a manifests folder only the compiler (controller/models.py) stands
between a file and the routing table. Each object below goes through both — the CRD as the
API server applies it (tests/crd_support.py) and ``crdgate validate``'s load and compile
(crdgate/report.py) — and both must accept it or both refuse it. The set covers the
redirects Gateway API allows and forbids and the values that would inject bytes into a
request line or a header.
"""

from __future__ import annotations

import json

import pytest

from crdgate.report import compile_folder
from crd_support import admit, api_endpoint

URL = [{"url": "http://127.0.0.1:9000"}]


def full_path(value: str) -> dict:
    return {"type": "ReplaceFullPath", "replaceFullPath": value}


def prefix(value: str) -> dict:
    return {"type": "ReplacePrefixMatch", "replacePrefixMatch": value}


# name -> (spec, accepted?)
CASES = {
    # Redirects (Gateway API RequestRedirect: every field optional).
    "redirect with only a status code": ({"path": "/a", "redirect": {"statusCode": 303}}, True),
    "redirect with nothing set (302 to the same URL)": ({"path": "/a", "redirect": {}}, True),
    "redirect to https": ({"path": "/a", "redirect": {"scheme": "https", "statusCode": 301}}, True),
    "redirect to another host and port": ({"path": "/a", "redirect": {"hostname": "b.example.com", "port": 8443}}, True),
    "redirect replacing the prefix": ({"path": "/a", "redirect": {"path": prefix("/b")}}, True),
    "redirect replacing the path": ({"path": "/a", "redirect": {"path": full_path("/b/%7Ec"), "statusCode": 308}}, True),
    "redirect with status 304": ({"path": "/a", "redirect": {"statusCode": 304}}, False),
    "redirect with a backend": ({"path": "/a", "redirect": {"statusCode": 303}, "backends": URL}, False),
    "redirect prefix on an exact path": ({"path": "/a", "pathType": "Exact", "redirect": {"path": prefix("/b")}}, False),
    "redirect with scheme ftp": ({"path": "/a", "redirect": {"scheme": "ftp"}}, False),
    "redirect hostname wildcard": ({"path": "/a", "redirect": {"hostname": "*.example.com"}}, False),
    # CR/LF and friends in what is written into a request line or a header.
    "redirect path injecting a header": (
        {"path": "/a", "redirect": {"path": full_path("/x\r\nSet-Cookie: session=evil")}}, False),
    "redirect prefix injecting a header": (
        {"path": "/a", "redirect": {"path": prefix("/x\r\nSet-Cookie: session=evil")}}, False),
    "redirect path with a trailing LF": ({"path": "/a", "redirect": {"path": full_path("/x\n")}}, False),
    "redirect hostname injecting a header": (
        {"path": "/a", "redirect": {"hostname": "b.example.com\r\nSet-Cookie: x=1"}}, False),
    "redirect hostname with a trailing LF": ({"path": "/a", "redirect": {"hostname": "b.example.com\n"}}, False),
    "rewrite full path smuggling a request": (
        {"path": "/a", "backends": URL,
         "rewrite": {"path": full_path("/admin HTTP/1.1\r\nHost: internal\r\n\r\nGET /smuggled")}}, False),
    "rewrite prefix with CRLF": ({"path": "/a", "backends": URL, "rewrite": {"path": prefix("/v2\r\nX: 1")}}, False),
    "rewrite path with a space": ({"path": "/a", "backends": URL, "rewrite": {"path": full_path("/a b")}}, False),
    "rewrite path with a query": ({"path": "/a", "backends": URL, "rewrite": {"path": full_path("/a?b=1")}}, False),
    "rewrite path with a fragment": ({"path": "/a", "backends": URL, "rewrite": {"path": prefix("/a#b")}}, False),
    "rewrite path with a bare percent": ({"path": "/a", "backends": URL, "rewrite": {"path": full_path("/100%")}}, False),
    "rewrite path with NUL": ({"path": "/a", "backends": URL, "rewrite": {"path": full_path("/a\x00")}}, False),
    "rewrite path with raw non-ASCII": ({"path": "/a", "backends": URL, "rewrite": {"path": full_path("/café")}}, False),
    "rewrite path, RFC 3986 characters": (
        {"path": "/a", "backends": URL, "rewrite": {"path": full_path("/a-b_c.d~e/%7Eu/x:y@z;v=1,2/!$&'()*+")}}, True),
    "rewrite hostname injecting a header": (
        {"path": "/a", "backends": URL, "rewrite": {"hostname": "b.example.com\r\nX-Evil: 1"}}, False),
    "rewrite hostname with a port": ({"path": "/a", "backends": URL, "rewrite": {"hostname": "b.example.com:80"}}, False),
    "rewrite hostname wildcard": ({"path": "/a", "backends": URL, "rewrite": {"hostname": "*.example.com"}}, False),
    "rewrite hostname label of 64": ({"path": "/a", "backends": URL, "rewrite": {"hostname": "a" * 64 + ".com"}}, False),
    "rewrite hostname label of 63": ({"path": "/a", "backends": URL, "rewrite": {"hostname": "a" * 63 + ".com"}}, True),
    "backend url with CRLF": ({"path": "/a", "backends": [{"url": "http://b.example.com\r\n:80"}]}, False),
    "backend url with a space": ({"path": "/a", "backends": [{"url": "http://b example.com:80"}]}, False),
    "header value with CRLF": (
        {"path": "/a", "backends": URL, "requestHeaders": {"set": [{"name": "X-A", "value": "1\r\nX-B: 2"}]}}, False),
    "match path with CRLF": ({"path": "/a\r\nX: 1", "backends": URL}, False),
    "match path with a space": ({"path": "/a b", "backends": URL}, False),
    "match path with NUL": ({"path": "/a\x00", "backends": URL}, False),
}


def crd_accepts(spec: dict) -> tuple[bool, list[str]]:
    _, errors = admit(api_endpoint(spec, name="route", namespace="shop"))
    return not errors, errors


def folder_accepts(tmp_path, spec: dict) -> tuple[bool, str]:
    (tmp_path / "route.json").write_text(json.dumps(api_endpoint(spec, name="route", namespace="shop")))
    report = compile_folder(tmp_path)
    assert not report.load_errors, report.load_errors
    status = report.result.statuses["APIEndpoint:shop/route"]
    accepted = next(c for c in status.conditions if c.type == "Accepted")
    return accepted.status == "True", status.message


@pytest.mark.parametrize("name", CASES)
def test_crd_and_folder_source_agree(tmp_path, name):
    spec, expected = CASES[name]
    crd, crd_errors = crd_accepts(spec)
    folder, message = folder_accepts(tmp_path, spec)
    assert (crd, folder) == (expected, expected), f"CRD: {crd_errors}; folder source: {message}"
