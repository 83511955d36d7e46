"""The local Dask cluster: its HTTP endpoints take a free port, so a busy 8787 brings no warning."""
from __future__ import annotations

import socket
import warnings

from flows.cluster import dask_client
from flows.settings import Settings


def test_a_local_cluster_starts_without_port_warnings_while_8787_is_taken():
    with socket.socket() as busy:
        try:
            busy.bind(("", 8787))
            busy.listen()
        except OSError:
            pass  # another process holds it already: the same situation
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with dask_client(Settings.resolve(dask_workers=1)) as client:
                assert client.submit(sum, [1, 2], pure=False).result() == 3
    assert [str(w.message) for w in caught if "in use" in str(w.message)] == []
