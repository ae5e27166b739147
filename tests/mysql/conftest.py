"""One real MariaDB primary + replica for this folder (127.0.52.1 / 127.0.52.2, port 3317)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mysql.harness import Databases, databases

DB_PORT = 3317
STORE_PORT = 8117


@pytest.fixture(scope="session")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    with databases(tmp_path_factory.mktemp("mysql"), DB_PORT, STORE_PORT) as started:
        yield started
