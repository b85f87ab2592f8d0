"""What a policy may read and write of a request: ``RequestView``, ``ClientConnection``.

Policies (gateway/policies.py) and authenticators take a ``RequestView``: the
parsed request (method, normalised path, query, Host, raw header pairs and a
lower-case ``HeaderView``), the route and table it matched, the client
connection it came on, what authentication established (consumer, upstream
headers) and the response headers policies add; ``respond`` answers the
request. The exchange (gateway/exchange.py) extends it with the per-request
state of forwarding, and an HTTP/2 stream will feed the same exchange; no
policy sees either protocol.

``ClientConnection`` is what policies read of the connection: the client's
address, whether it is a trusted proxy, the listener's scheme, the rate
limiter, and the per-connection memos (the last credential, the rate-limit key
of the address). The HTTP/1 protocol (gateway/http1.py) extends it.

Compiled by Cython (request.pxd): policies read these fields as struct members.
"""

from __future__ import annotations

from gateway.upstream import Handler
from gateway.wire import forwarding_fields


class HeaderView:
    """Lower-case str view of the request headers, decoded only on lookup."""

    __slots__ = ("_headers", "_cache")

    def __init__(self, headers: list[tuple[bytes, bytes]]):
        self._headers = headers
        self._cache: dict[str, str] | None = None

    def _build(self) -> dict[str, str]:
        d: dict[str, str] = {}
        for name, value in self._headers:
            k = name.decode("latin-1").lower()
            v = value.decode("latin-1")
            d[k] = d[k] + ", " + v if k in d else v
        self._cache = d
        return d

    def get(self, name: str, default=None):
        d = self._cache if self._cache is not None else self._build()
        return d.get(name, default)

    def __getitem__(self, name: str) -> str:
        d = self._cache if self._cache is not None else self._build()
        return d[name]

    def __contains__(self, name: object) -> bool:
        d = self._cache if self._cache is not None else self._build()
        return name in d

    def items(self):
        d = self._cache if self._cache is not None else self._build()
        return d.items()


def header_view(headers: list[tuple[bytes, bytes]]) -> HeaderView:
    """``HeaderView(headers)`` for the per-request path: compiled, a C call that
    allocates and fills the view (calling the class is a Python call)."""
    hv = HeaderView.__new__(HeaderView)
    hv._headers = headers
    hv._cache = None
    return hv


class ClientConnection:
    """The client connection a request came on, as policies see it.

    Its fields are set by the protocol that extends it (gateway/http1.py).
    """

    def __init__(self, scheme: str = "http"):
        self.peer = ""  # the peer's address, as text
        self.trusted = False  # the peer is one of the configured trusted proxies
        self.scheme = scheme  # the listener's: what X-Forwarded-Proto says and redirects compare against
        self.limiter = None  # gateway.ratelimit.RateLimiter, when rate limiting is on
        self.ratelimit_headers = True  # whether allowed responses carry RateLimit-* fields
        self.auth_memo = None  # gateway.auth.base.AuthMemo, made by the first authenticated request
        self.addr_key = None  # the rate-limit key of the peer's address, made at first use
        # The peer as the forwarding fields write it (its address, and as a Forwarded node:
        # IPv6 quoted and bracketed), the scheme as bytes, and the forwarding block of the
        # last Host seen (fwd_key, fwd_block; see ``forwarding``).
        self.peer_bytes = self.forwarded_for = b""
        self.scheme_bytes = scheme.encode()
        self.fwd_key = None
        self.fwd_block = b""

    def forwarding(self, host: bytes, incoming: dict | None) -> bytes:
        """X-Forwarded-For/-Proto/-Host and Forwarded for a request to ``host`` on this
        connection (gateway/wire.py).

        From an untrusted peer the incoming values were dropped and the block
        depends only on the connection and the Host, so it is kept for the next
        request. From a trusted proxy (``incoming``: its values by name) the incoming
        chain is extended.
        """
        if incoming is None and self.fwd_key == host:
            return self.fwd_block
        block = forwarding_fields(self.peer_bytes, self.forwarded_for, self.scheme_bytes, host, incoming)
        if incoming is None:
            self.fwd_key = host
            self.fwd_block = block
        return block


class RequestView(Handler):
    """One request as policies see it (the exchange extends it).

    It extends the upstream side's ``Handler`` only because an extension type
    has a single base and the exchange must be both; policies never call the
    Handler methods.
    """

    def __init__(self, client: ClientConnection, server):
        self._init_view(client, server)

    def _init_view(self, client: ClientConnection, server) -> None:
        # A method rather than the body of __init__: the exchange calls it from its
        # own __init__ (compiled, a C call; calling a base __init__ is a Python one).
        self.client = client
        self.server = server  # gateway.server.Server: trusted proxies, stats, the limiter's headers
        self.method = "-"  # until the head is parsed: a request refused before that has none (access log)
        self.host = b""  # the Host (or the absolute-form authority), as received
        self.path = ""  # normalised (gateway/normalize.py)
        self.query = ""
        self.headers = []  # (name, value) pairs as received
        self.header_view = None  # a HeaderView of ``headers``, once routed
        self.table = None  # the routing table read once at the head
        self.route = None  # the route it matched
        self.consumer = None  # who authentication says the client is
        self.auth_headers = ()  # what authentication adds toward the upstream, encoded
        self.extra_resp_headers = None  # fields policies add to the response (RateLimit-*)
        self.replay = []  # the request body kept for a retry or a mirror (None: too large)
        self.req_done = False  # the whole request has been read

    def respond(self, status: int, message: str, extra=None, close: bool = False, body: bytes | None = None) -> None:
        """Answer from the gateway itself (errors, redirects, preflights)."""
        raise NotImplementedError
