"""A small keep-alive HTTP client for the harness's own requests.

Used where a request's answer must be looked at one by one: readiness, the
preflight check of each scenario, the propagation poll and the churn settle
check. (Load comes from wrk, never from here.)
"""

from __future__ import annotations

import http.client


class Client:
    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 2.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._conn: http.client.HTTPConnection | None = None

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        """(status, body); status 0 with the error text when the connection failed."""
        for attempt in (0, 1):  # a kept-alive connection the server closed is retried once
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request("GET", path, headers=headers or {})
                resp = self._conn.getresponse()
                body = resp.read().decode("utf-8", "replace")
                if resp.will_close:
                    self.close()
                return resp.status, body
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 1:
                    return 0, f"{type(exc).__name__}: {exc}"
        return 0, "unreachable"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
