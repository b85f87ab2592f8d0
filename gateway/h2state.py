"""h2's connection state machine, counting open streams in constant time.

Both sides of the proxy's HTTP/2 (gateway/h2server.py toward clients,
gateway/h2upstream.py toward backends) drive an ``H2State``: the ``h2``
package's ``H2Connection`` with one change. Before opening a stream h2 checks
the peer's (or our) ``SETTINGS_MAX_CONCURRENT_STREAMS`` by counting the open
streams, a walk over every stream it holds, which also drops the closed ones
(h2 keeps a stream's state until that walk). With 100 streams in flight that
walk cost more than the rest of opening the stream; with 200 on an upstream
connection, twice that.

Here the count is ``len(streams)`` (an upper bound: closed streams not yet
dropped are in it) while that is below both the limit and ``_prune_at``, so
the check passes exactly when h2's would; at either bound h2's own walk counts
exactly and drops the closed streams, and ``_prune_at`` moves to twice what
remains. The walk is thus paid once per many new streams, not once per stream,
and h2 holds at most ``max(PRUNE_FLOOR, 2 x open)`` streams of a connection.

Header blocks are coded by gateway/h2hpack.py instead of the ``hpack``
package's encoder and decoder (same interface, a fraction of the cost).

And each frame received is handled without the ``repr(frame)`` that h2 builds
for its trace logger before every frame, whether that logger is on or not
(about 2 us a frame; a proxied gRPC call receives six).
"""

from __future__ import annotations

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import StreamClosedError, StreamIDTooLowError
from hyperframe.frame import RstStreamFrame

from gateway.h2hpack import FieldDecoder, FieldEncoder

# Closed streams h2 may hold before they are dropped (each a few hundred bytes).
PRUNE_FLOOR = 256


class H2State(H2Connection):
    """``h2.connection.H2Connection`` with the open-stream count of the module docstring."""

    _prune_at = PRUNE_FLOOR

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.encoder = FieldEncoder()
        self.decoder = FieldDecoder(self.decoder.max_header_list_size)

    @property
    def open_inbound_streams(self) -> int:
        """The open streams the peer started; exact from the limit on, an upper bound below it."""
        held = len(self.streams)
        if held < self.local_settings.max_concurrent_streams and held < self._prune_at:
            return held  # h2 asks whether one more fits: it does, as it would by the exact count
        return self._pruned(super().open_inbound_streams)

    @property
    def open_outbound_streams(self) -> int:
        """The open streams we started; exact from the limit on, an upper bound below it."""
        held = len(self.streams)
        if held < self.remote_settings.max_concurrent_streams and held < self._prune_at:
            return held
        return self._pruned(super().open_outbound_streams)

    def _pruned(self, count: int) -> int:
        """After h2's walk (which dropped the closed streams): the next walk when twice as many are held."""
        self._prune_at = max(PRUNE_FLOOR, 2 * len(self.streams))
        return count

    def _receive_frame(self, frame):
        """h2's ``H2Connection._receive_frame`` (h2 4.1-4.4), less its trace line's ``repr(frame)``."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            # Closed by RST_STREAM: a stream error, answered with RST_STREAM; else a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            # A stream closed by RST_STREAM: a stream error; by END_STREAM or implicitly: a connection error.
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events
