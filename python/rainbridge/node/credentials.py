"""The credentials of SQL data sources, sealed under the node's master key.

A SQL dataset's URL holds a password, so the node stores it only sealed, with the suite's
at-rest AEAD (AES-256-GCM, or SM4-GCM under 国密) under a key derived from the master key for
this purpose alone, and bound to the dataset's name and credential key (a sealed URL copied
to another dataset's row does not open). The clear URL lives in the node's memory and is
handed to a job's worker on its stdin (:mod:`rainbridge.node.runner`), never written out.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from rainbridge.crypto.suites import get_suite
from rainbridge.errors import ConfigError, CryptoError
from rainbridge.node.keys import derive, load_master_key


class SourceCredentials:
    """Seals and opens the URLs of one node's SQL datasets."""

    def __init__(self, directory: Path, suite_name: str, master_key_file: str = "") -> None:
        self._suite = get_suite(suite_name)
        self._key = derive(
            self._suite, load_master_key(directory, master_key_file), "sql-credentials"
        )

    @staticmethod
    def _aad(dataset: str, credential: str) -> bytes:
        return f"rainbridge/sql-source/{dataset}/{credential}".encode()

    def seal(self, dataset: str, credential: str, url: str) -> str:
        return base64.b64encode(
            self._suite.seal(self._key, url.encode(), self._aad(dataset, credential))
        ).decode()

    def unseal(self, dataset: str, credential: str, sealed: str) -> str:
        """The clear URL.

        Raises
        ------
        ConfigError
            It does not open: another master key, or the row was altered.
        """
        try:
            raw = self._suite.unseal(
                self._key, base64.b64decode(sealed), self._aad(dataset, credential)
            )
            return raw.decode()
        except (ValueError, binascii.Error, UnicodeError, CryptoError) as exc:
            raise ConfigError(
                f"dataset {dataset!r}: its database credentials do not open under this "
                f"node's master key ({type(exc).__name__}); register it again"
            ) from None
