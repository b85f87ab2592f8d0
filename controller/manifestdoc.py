"""One manifest file read as the API server would have stored its objects.

``parse_file`` turns a YAML or JSON file into its objects, each with the defaults
the API server would have given it (namespace, generation, uid, resourceVersion,
creationTimestamp, Secret ``stringData`` folded into ``data``), and its problems
as ``LoadError``s with file, document and line. Which kinds are read, at which
apiVersions, and which groups are known in full live here too. The folder around
the files (scanning, watching, publishing to the Store) is controller/files.py.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Iterator, Mapping

import yaml
from yaml.nodes import ScalarNode

from controller import store as store_mod
from controller.gatewayapi import objects as gatewayapi
from controller.refgrant import GRANT_API_VERSIONS, validate_grant

log = logging.getLogger("crdgate.controller.files")

EPOCH = "1970-01-01T00:00:00Z"

# kind -> the apiVersions it is served at. A known kind at another version is an
# error rather than silently ignored: it is almost always a typo or an old
# manifest (networking.k8s.io/v1beta1) the user expects to take effect.
API_VERSIONS = {
    store_mod.APIENDPOINT: ("crdgate.io/v1",),
    store_mod.SERVICE: ("v1",),
    store_mod.ENDPOINTSLICE: ("discovery.k8s.io/v1",),
    store_mod.INGRESS: ("networking.k8s.io/v1",),
    store_mod.INGRESSCLASS: ("networking.k8s.io/v1",),
    store_mod.SECRET: ("v1",),
    store_mod.REFERENCEGRANT: GRANT_API_VERSIONS,
    store_mod.NAMESPACE: ("v1",),
    **{kind: gatewayapi.api_versions(kind) for kind in gatewayapi.KINDS},
}
CLUSTER_SCOPED = frozenset({store_mod.INGRESSCLASS, store_mod.NAMESPACE}) | gatewayapi.CLUSTER_SCOPED

# Groups whose every kind crdgate knows: there an unknown kind ("APIEndpiont",
# "Ingres") is a load error naming the nearest known kind, not an object silently
# ignored (a typo must not make a route vanish without a word). A group's known
# kinds are the ones crdgate reads (API_VERSIONS, by the group of their
# apiVersion) and the ones listed here, which it leaves alone. Objects of other
# groups (core Namespace, apps Deployment, ...) are ignored. To read a new kind,
# add it to API_VERSIONS (and controller.store.KINDS); to check a whole group,
# list it here with the kinds of it that crdgate does not read.
KNOWN_GROUPS: dict[str, frozenset[str]] = {
    "crdgate.io": frozenset(),
    "networking.k8s.io": frozenset({"NetworkPolicy", "IPAddress", "ServiceCIDR"}),
    # Gateway API, standard and experimental channels.
    "gateway.networking.k8s.io": frozenset({
        "BackendTLSPolicy", "TLSRoute", "TCPRoute", "UDPRoute", "BackendLBPolicy", "ListenerSet",
    }),
}


def api_group(api_version: str) -> str:
    """The group of an apiVersion ("crdgate.io/v1" -> "crdgate.io"; the core "v1" -> "")."""
    group, _, _ = api_version.rpartition("/")
    return group


def known_kinds(group: str) -> frozenset[str]:
    """Every kind of ``group`` that crdgate knows of (reads or leaves alone)."""
    read = {kind for kind, versions in API_VERSIONS.items() if any(api_group(v) == group for v in versions)}
    return KNOWN_GROUPS.get(group, frozenset()) | read


def _unknown_kind(kind: str, group: str) -> str:
    known = {k.lower(): k for k in known_kinds(group)}
    close = difflib.get_close_matches(kind.lower(), sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {known[close[0]]}?)" if close else f" (known: {', '.join(sorted(known.values()))})"
    return f"not a kind of {group}{hint}"

# The API server's name rules: names are DNS-1123 subdomains, namespaces labels.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_UID_NS = uuid.UUID("6f1c1a52-3c1e-4b8e-9d51-1f3c2b7e0a11")


@dataclass(frozen=True)
class LoadError:
    """One file (or document of a file) that could not be loaded."""

    path: str  # as shown to the user: the root as given, joined with the relative path
    document: int | None  # index of the YAML document (0-based); None: the whole file
    message: str
    line: int | None = None  # 1-based, when known
    column: int | None = None  # 1-based, when known

    def __str__(self) -> str:
        # file:line:column, the form editors and terminals jump to; the document
        # index only when no line is known.
        if self.line is not None:
            where = f"{self.path}:{self.line}" + (f":{self.column}" if self.column is not None else "")
        else:
            where = self.path if self.document is None else f"{self.path}#{self.document}"
        return f"{where}: {self.message}"

    def sort_key(self) -> tuple:
        return (self.path, -1 if self.document is None else self.document, self.line or 0, self.message)

    def to_json(self) -> dict:
        return {
            "file": self.path,
            "document": self.document,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }


# -- YAML loading --------------------------------------------------------------

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loading as the API server's JSON sees it.

    Timestamps stay strings (``creationTimestamp: 2024-01-01T00:00:00Z`` must not
    become a datetime), and a key repeated in one mapping is an error instead of
    the last one silently winning, as kubectl's strict decoding does.
    """

    def construct_mapping(self, node, deep=False):
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE:
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor(_TIMESTAMP, _Loader.construct_yaml_str)


@dataclass(frozen=True, slots=True)
class _Doc:
    index: int
    line: int  # 1-based line where the document's content starts
    data: object


class _ParseError(Exception):
    def __init__(self, document: int | None, message: str, line: int | None, column: int | None):
        super().__init__(message)
        self.document, self.message, self.line, self.column = document, message, line, column


def _yaml_documents(raw: bytes) -> Iterator[_Doc]:
    loader = _Loader(raw)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 1
            yield _Doc(index, line, loader.construct_document(node) if node is not None else None)
            index += 1
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        context = e.context
        if context and e.context_mark is not None and mark is not None and e.context_mark.line != mark.line:
            # An unclosed bracket or quote is noticed lines later: say where it was opened,
            # which is where the fix goes.
            context += f" (started at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
        parts = [p for p in (context, e.problem) if p]
        raise _ParseError(
            index,
            "YAML: " + ", ".join(parts) if parts else "YAML: invalid document",
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
        ) from None
    except yaml.YAMLError as e:  # reader errors (bad bytes) carry no mark
        raise _ParseError(index, "YAML: " + " ".join(str(e).split()), None, None) from None
    finally:
        loader.dispose()


def _json_documents(raw: bytes) -> Iterator[_Doc]:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise _ParseError(0, f"JSON: {e.msg}", e.lineno, e.colno) from None
    except UnicodeDecodeError as e:
        raise _ParseError(0, f"JSON: not UTF-8 ({e.reason})", None, None) from None
    yield _Doc(0, 1, data)


# -- documents -> objects ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One object a file provides."""

    kind: str
    key: str  # "namespace/name"
    obj: dict
    origin: str  # "path#doc" or "path#doc.items[i]"
    document: int
    line: int


def _content_hash(obj: Mapping) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def _fold_string_data(secret: dict, where: str) -> dict:
    """Secret ``stringData`` becomes base64 ``data`` (stringData wins), as on the API server."""
    string_data = secret.get("stringData")
    if not isinstance(string_data, Mapping):
        raise ValueError(f"{where}: stringData must be a mapping of strings")
    data = secret.get("data") or {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: data must be a mapping of base64 strings")
    data = dict(data)
    for k, v in string_data.items():
        if not isinstance(v, str):
            raise ValueError(f"{where}: stringData.{k} must be a string (quote it)")
        data[str(k)] = base64.b64encode(v.encode()).decode("ascii")
    out = {k: v for k, v in secret.items() if k != "stringData"}
    out["data"] = data
    return out


def _object(doc: object, origin: str) -> tuple[str, dict] | None:
    """Validate one document's envelope and add the API server's defaults.

    Returns (kind, object), or None for a kind this gateway does not read.
    Raises ValueError with a message naming the object and field.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"a manifest must be a mapping, not {type(doc).__name__}")
    api_version, kind, meta = doc.get("apiVersion"), doc.get("kind"), doc.get("metadata")
    if not isinstance(kind, str) or not kind:
        raise ValueError("missing kind")
    if not isinstance(api_version, str) or not api_version:
        raise ValueError(f"{kind} has no apiVersion")
    if not isinstance(meta, dict):
        raise ValueError(f"{kind} has no metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{kind} has no metadata.name")
    wanted = API_VERSIONS.get(kind)
    if wanted is None:
        group = api_group(api_version)
        if group in KNOWN_GROUPS and kind not in known_kinds(group):
            raise ValueError(f"{kind} {name}: {_unknown_kind(kind, group)}")
        log.debug("%s: ignoring %s %s (not a kind crdgate reads)", origin, kind, name)
        return None
    if api_version not in wanted:
        raise ValueError(f"{kind} {name}: apiVersion must be {' or '.join(wanted)}, not {api_version}")
    if len(name) > 253 or not _NAME.fullmatch(name):
        raise ValueError(f"{kind} {name!r}: metadata.name must be lower-case letters, digits, '-' and '.'")
    if kind == store_mod.NAMESPACE and (len(name) > 63 or not _NAMESPACE.fullmatch(name)):
        raise ValueError(f"{kind} {name!r}: metadata.name must be lower-case letters, digits and '-' (at most 63)")
    if kind in CLUSTER_SCOPED:
        namespace = ""
    else:
        namespace = meta.get("namespace") or "default"
        if not isinstance(namespace, str) or len(namespace) > 63 or not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                f"{kind} {name}: metadata.namespace {namespace!r} must be lower-case letters, digits and '-'"
            )
    if kind == store_mod.REFERENCEGRANT:
        try:
            validate_grant(doc)
        except ValueError as e:
            raise ValueError(f"{kind} {namespace}/{name}: {e}") from None
    elif kind in gatewayapi.MODELS:
        try:
            gatewayapi.parse(kind, doc)
        except gatewayapi.InvalidObject as e:
            raise ValueError(f"{kind} {f'{namespace}/' if namespace else ''}{name}: {e}") from None
    obj = dict(doc)
    if kind == store_mod.SECRET and "stringData" in obj:
        obj = _fold_string_data(obj, f"Secret {namespace}/{name}")
    meta = dict(meta)
    meta["namespace"] = namespace
    meta.setdefault("generation", 1)
    meta.setdefault("creationTimestamp", EPOCH)
    meta.pop("resourceVersion", None)
    meta.pop("uid", None)
    obj["metadata"] = meta
    # Like the API server, the uid and resourceVersion are ours, not the file's.
    rv = _content_hash(obj)
    meta["uid"] = str(uuid.uuid5(_UID_NS, f"{kind}/{namespace}/{name}"))
    meta["resourceVersion"] = rv
    return kind, store_mod.compact(obj)


def _is_list(doc: object) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("kind"), str)
        and doc["kind"].endswith("List")
        and "items" in doc
    )


def parse_file(abs_path: str, shown: str) -> tuple[list[Entry], list[LoadError], list[str]]:
    """Every object a file provides, its errors, and the kinds of the objects it ignored. Never raises."""
    entries: list[Entry] = []
    errors: list[LoadError] = []
    ignored: list[str] = []
    try:
        with open(abs_path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return [], [LoadError(shown, None, f"cannot read: {e.strerror or e}")], []
    docs = _json_documents(raw) if abs_path.endswith(".json") else _yaml_documents(raw)
    try:
        for doc in docs:
            base = f"{shown}#{doc.index}"
            if _is_list(doc.data):
                items = doc.data["items"]
                if not isinstance(items, list):
                    errors.append(LoadError(shown, doc.index, "List: items must be a list", doc.line))
                    continue
                members = [(f"items[{i}]: ", f"{base}.items[{i}]", item) for i, item in enumerate(items)]
            elif doc.data is None:  # an empty document, e.g. a trailing '---'
                continue
            else:
                members = [("", base, doc.data)]
            for prefix, origin, data in members:
                try:
                    got = _object(data, origin)
                except ValueError as e:
                    errors.append(LoadError(shown, doc.index, f"{prefix}{e}", doc.line))
                    continue
                if got is None:
                    ignored.append(data["kind"])
                else:
                    kind, obj = got
                    meta = obj["metadata"]
                    key = f"{meta['namespace']}/{meta['name']}"
                    entries.append(Entry(kind, key, obj, origin, doc.index, doc.line))
    except _ParseError as e:
        errors.append(LoadError(shown, e.document, e.message, e.line, e.column))
    return entries, errors, ignored


# -- the folder ----------------------------------------------------------------
