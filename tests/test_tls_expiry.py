"""An expired or not-yet-valid certificate still loads (the Secret's owner decides), with a warning in the log."""

from __future__ import annotations

import datetime as dt
import logging

from gateway.tls import CertificateStore, validity_warning
from tlsharness import CA

NOW = dt.datetime.now(dt.timezone.utc)
DAY = dt.timedelta(days=1)


def test_validity_warning_names_the_date():
    ca = CA()
    assert validity_warning(ca.issue("a.test").bundle()) is None
    expired = ca.issue("a.test", valid=(NOW - 3 * DAY, NOW - DAY)).bundle()
    assert validity_warning(expired).startswith("expired on ")
    early = ca.issue("a.test", valid=(NOW + DAY, NOW + 3 * DAY)).bundle()
    assert validity_warning(early).startswith("not valid before ")


def test_store_serves_an_expired_certificate_and_warns(caplog):
    ca = CA()
    store = CertificateStore()
    with caplog.at_level(logging.WARNING, logger="crdgate.tls"):
        store.update({"a.test": ca.issue("a.test", valid=(NOW - 3 * DAY, NOW - DAY)).bundle("Secret shop/a")})
    assert store.select("a.test")[0] is not None
    assert any("Secret shop/a is expired on" in r.getMessage() for r in caplog.records)
