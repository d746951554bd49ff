"""Stand-alone verifier of a Rainbridge ledger (存证) bundle.

This file is self-contained on purpose: it needs only Python 3.11 and the ``cryptography``
package, version 38 or later (:data:`MIN_CRYPTOGRAPHY`; Debian 12's python3-cryptography is
38.0.4), plus ``sm2_pure.py`` beside it for ledgers written under the 国密 suite), so an
auditor can check an exported bundle without installing Rainbridge and without trusting it.
``rainbridge ledger verify`` runs the same checks on a node's own database.

Usage::

    python verify_ledger.py BUNDLE_DIR [--fingerprint SHA256_OF_THE_NODE_CERTIFICATE]

A bundle (written by ``rainbridge ledger export``) holds ``entries.jsonl`` (one signed entry a
line), ``head.json`` (the signed position of the last entry) and ``certs/*.pem`` (every
certificate whose key signed an entry or a countersignature).

What is checked, entry by entry:

- the entry's hash is the hash of its content (SHA-256, or SM3 under the 国密 suite): an
  **edited** entry fails here;
- its ``seq`` follows the previous one and its ``prev`` is the previous entry's hash: a
  **deleted**, **inserted** or **reordered** entry fails here, and so does an entry
  **replayed** from another node's or another position's ledger;
- its signature verifies under the key of the certificate it names, and that certificate is
  the node's current one at that point of the chain (the first entry names the first one; a
  ``key_rotated`` entry, signed with the old key, hands over to the new): a **forged**
  signature, or one made with any other key, fails here;
- a ``job_record`` entry's record names the entry's own job, appears once per job, and carries
  a valid countersignature from every party of the job under that party's certificate: a
  record **replayed from another job** fails here;
- ``head.json`` is signed by the node's key of its time and names an entry that is there
  with that hash: a **truncated** ledger (entries deleted at the end) fails here. Entries
  after the head are accepted (the node appended them since it last wrote its head).

With ``--fingerprint`` (the node's certificate fingerprint, as its peers pinned it), the
chain must end at that certificate, so a bundle rebuilt wholesale under another key fails.

Exit status: 0 when every check passes; 8 (as ``rainbridge ledger verify``) when any fails,
a bundle that cannot be read included; 2 for wrong arguments or a ``cryptography`` older
than :data:`MIN_CRYPTOGRAPHY`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: exit status when the ledger does not verify (the same as ``rainbridge ledger verify``)
EXIT_TAMPERED = 8
#: domain separation of every hash and signature, so nothing signed here means anything else
ENTRY_DOMAIN = b"rainbridge/ledger/entry/v1\x00"
HEAD_DOMAIN = b"rainbridge/ledger/head/v1\x00"
RECORD_DOMAIN = b"rainbridge/ledger/job-record/v1\x00"
ROTATION_DOMAIN = b"rainbridge/ledger/rotation/v1\x00"
#: the X.509 extension that carries a node's ledger-signing public key (a UUID OID, X.667)
LEDGER_KEY_OID = "2.25.279548411624387702455325164788736981903"
GENESIS = "0" * 64
#: the oldest ``cryptography`` this file is tested with (Ed25519 and SM3 are all it uses)
MIN_CRYPTOGRAPHY = (38, 0)
SUITES = ("standard", "gm")


def canonical(obj: Any) -> bytes:
    """The one byte string that is hashed and signed for a JSON value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def suite_hash(suite: str, data: bytes) -> bytes:
    if suite == "gm":
        h = hashes.Hash(hashes.SM3())
        h.update(data)
        return h.finalize()
    return hashlib.sha256(data).digest()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return suite_hash(str(entry.get("suite")), ENTRY_DOMAIN + canonical(entry)).hex()


# Certificates are read with a few lines of DER below rather than ``cryptography.x509``: the
# ledger-key extension's OID is a UUID arc (2.25.<128-bit number>), which older cryptography
# releases (38 among them) refuse when they load the certificate ("error parsing asn1 value
# ... Extension::extn_id"), and an auditor's distribution (Debian 12: 38.0.4) may ship one.
# The verifier needs from a certificate only its bytes (the fingerprint), its CN and that
# extension; its own signature means nothing here (certificates are pinned by fingerprint).
_PEM_BEGIN, _PEM_END = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
_CN_OID = bytes([0x55, 0x04, 0x03])  # 2.5.4.3


def _oid_der(dotted: str) -> bytes:
    """The DER content octets of an OBJECT IDENTIFIER."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for n in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.append(0x80 | (n & 0x7F))
            n >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


_LEDGER_KEY_OID_DER = _oid_der(LEDGER_KEY_OID)


def _tlv(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at ``pos``."""
    if pos + 2 > end:
        raise ValueError("truncated DER")
    tag, n = der[pos], der[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 4 or pos + k > end:
            raise ValueError("bad DER length")
        n = int.from_bytes(der[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise ValueError("truncated DER")
    return tag, pos, pos + n


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tlv = _tlv(der, start, end)
        out.append(tlv)
        start = tlv[2]
    return out


def certificate_der(pem: str) -> bytes:
    """The DER bytes of a PEM certificate; ValueError if it is not one."""
    try:
        body = pem[pem.index(_PEM_BEGIN) + len(_PEM_BEGIN) : pem.index(_PEM_END)]
    except ValueError:
        raise ValueError("not a PEM certificate") from None
    der = base64.b64decode("".join(body.split()), validate=True)
    tag, _, end = _tlv(der, 0, len(der))
    if tag != 0x30 or end != len(der):
        raise ValueError("not a DER certificate")
    return der


def _tbs_fields(der: bytes) -> list[tuple[int, int, int]]:
    """The fields of the certificate's TBSCertificate, version included when present."""
    _, start, end = _tlv(der, 0, len(der))
    tag, tstart, tend = _tlv(der, start, end)
    if tag != 0x30:
        raise ValueError("not a DER certificate")
    fields = _children(der, tstart, tend)
    if len(fields) < 6:  # serial, signature, issuer, validity, subject, key at least
        raise ValueError("not a DER certificate")
    return fields


def _subject(der: bytes) -> tuple[int, int, int]:
    fields = _tbs_fields(der)
    first = 1 if fields[0][0] == 0xA0 else 0  # [0] version
    subject = fields[first + 4]  # serial, signature, issuer, validity, subject
    if subject[0] != 0x30:
        raise ValueError("not a DER certificate")
    return subject


def _extension_value(der: bytes, oid: bytes) -> bytes | None:
    """The extnValue octets of extension ``oid``, or None if the certificate lacks it."""
    for tag, start, end in _tbs_fields(der):
        if tag != 0xA3:  # [3] extensions
            continue
        _, estart, eend = _tlv(der, start, end)
        for _, xstart, xend in _children(der, estart, eend):
            parts = _children(der, xstart, xend)
            if len(parts) < 2 or parts[0][0] != 0x06 or parts[-1][0] != 0x04:
                raise ValueError("malformed certificate extension")
            if der[parts[0][1] : parts[0][2]] == oid:
                return der[parts[-1][1] : parts[-1][2]]
    return None


def fingerprint_pem(pem: str) -> str:
    """SHA-256 of the certificate's DER bytes: the fingerprint peers pin."""
    return hashlib.sha256(certificate_der(pem)).hexdigest()


def common_name(pem: str) -> str | None:
    """The certificate subject's CN (a node's name), or None if it has none."""
    der = certificate_der(pem)
    _, start, end = _subject(der)
    for _, sstart, send in _children(der, start, end):  # RDN SETs
        for _, astart, aend in _children(der, sstart, send):  # AttributeTypeAndValue
            parts = _children(der, astart, aend)
            if len(parts) == 2 and der[parts[0][1] : parts[0][2]] == _CN_OID:
                tag, vstart, vend = parts[1]
                raw = der[vstart:vend]
                return raw.decode("utf-16-be") if tag == 0x1E else raw.decode()
    return None


def ledger_key_of(pem: str) -> tuple[str, bytes]:
    """(algorithm, public key) of the ledger key a node certificate carries."""
    raw = _extension_value(certificate_der(pem), _LEDGER_KEY_OID_DER)
    if raw is None:
        raise ValueError("the certificate carries no ledger key")
    # DER OCTET STRING (short or one-byte long form) around a small JSON object
    if len(raw) < 2 or raw[0] != 0x04:
        raise ValueError("malformed ledger-key extension")
    start = 2 if raw[1] < 0x80 else 2 + (raw[1] & 0x7F)
    obj = json.loads(raw[start:])
    alg, key = str(obj["alg"]), bytes.fromhex(obj["key"])
    if alg not in ("ed25519", "sm2"):
        raise ValueError(f"unknown ledger-key algorithm {alg!r}")
    return alg, key


def verify_signature(alg: str, public_key: bytes, signature: bytes, message: bytes) -> bool:
    if alg == "ed25519":
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
            return True
        except (InvalidSignature, ValueError):
            return False
    if alg == "sm2":
        try:  # the native core where Rainbridge is installed (fast)...
            from rainbridge._core import sm2_verify as core_verify

            return bool(core_verify(public_key, b"1234567812345678", message, signature))
        except ImportError:
            pass
        except ValueError:
            return False
        try:  # ...else plain Python
            from rainbridge.crypto.sm2_pure import sm2_verify
        except ImportError:  # the bundle's copy, beside this file
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from sm2_pure import sm2_verify  # type: ignore[import-not-found,no-redef]
        try:
            return bool(sm2_verify(public_key, message, signature))
        except ValueError:
            return False
    return False


def index_certificates(
    recorded: Iterable[tuple[str, str, str]],
) -> tuple[dict[str, str], list[str]]:
    """Certificates by the fingerprint of their content, and what was wrong with them.

    ``recorded`` holds ``(where, fingerprint, pem)``: where a certificate was found and the
    fingerprint it was filed under (a database column, a file name). That fingerprint is never
    trusted: a certificate filed under another one's fingerprint is a substitution (a forger
    who re-signs the ledger with a key of his own must pass his certificate off as the pinned
    one), reported and kept only under its own fingerprint.
    """
    certs: dict[str, str] = {}
    problems: list[str] = []
    for where, fp, pem in recorded:
        want = fp.replace(":", "").lower()
        try:
            actual = fingerprint_pem(pem)
        except ValueError as exc:
            problems.append(f"{where} recorded as {want[:16]}… cannot be read: {exc}")
            continue
        if actual != want:
            problems.append(
                f"{where} recorded as {want[:16]}… is another certificate (its content's "
                f"fingerprint is {actual[:16]}…): substituted"
            )
        certs[actual] = pem
    return certs, problems


@dataclass
class Report:
    """What a verification found: ``ok`` when ``problems`` is empty."""

    node: str = ""
    entries: int = 0
    job_records: int = 0
    first_key: str = ""
    last_key: str = ""
    head: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "node": self.node,
            "entries": self.entries,
            "job_records": self.job_records,
            "first_key": self.first_key,
            "last_key": self.last_key,
            "head": self.head,
            "problems": self.problems,
        }


def _check_signed(
    certs: Mapping[str, str], fp: str, signature_hex: str, message: bytes
) -> str | None:
    """None if ``signature_hex`` is ``fp``'s ledger key's signature of ``message``."""
    pem = certs.get(fp)
    if pem is None:
        return f"certificate {fp[:16]}… is not in the bundle"
    try:
        alg, key = ledger_key_of(pem)
        sig = bytes.fromhex(signature_hex)
    except (ValueError, KeyError, TypeError) as exc:
        return f"certificate {fp[:16]}…: {exc}"
    if not verify_signature(alg, key, sig, message):
        return f"signature does not verify under certificate {fp[:16]}…"
    return None


def check_record(
    record: Mapping[str, Any], signatures: Mapping[str, Any], certs: Mapping[str, str]
) -> list[str]:
    """Problems with a job record's countersignatures (empty: every party signed it)."""
    problems: list[str] = []
    certs, _ = index_certificates(("certificate", fp, pem) for fp, pem in certs.items())
    parties = record.get("parties")
    if not isinstance(parties, list) or not parties:
        return ["the record names no parties"]
    message = RECORD_DOMAIN + canonical(record)
    for party in parties:
        s = signatures.get(party)
        if not isinstance(s, dict):
            problems.append(f"no countersignature of party {party!r}")
            continue
        why = _check_signed(certs, str(s.get("key")), str(s.get("sig")), message)
        if why:
            problems.append(f"countersignature of {party!r}: {why}")
        elif certs_owner(certs, str(s.get("key"))) not in (None, party):
            problems.append(f"countersignature of {party!r} is made with another node's key")
    extra = set(signatures) - set(parties)
    if extra:
        problems.append(f"signatures of non-parties: {sorted(extra)}")
    return problems


def certs_owner(certs: Mapping[str, str], fp: str) -> str | None:
    """The CN of certificate ``fp`` (a node's name), or None if unreadable."""
    try:
        return common_name(certs[fp])
    except (KeyError, ValueError, IndexError):
        return None


def verify_entries(
    entries: Iterable[Mapping[str, Any]],
    certs: Mapping[str, str],
    head: Mapping[str, Any] | None,
    expected_fingerprint: str | None = None,
) -> Report:
    """Check a ledger: chain, signatures, key hand-overs, job records and head.

    Parameters
    ----------
    entries
        Stored entries in order, each ``{"entry": {...}, "hash": hex, "sig": hex}``.
    certs
        PEM certificates by SHA-256 fingerprint (hex); each is checked against its content's
        fingerprint, and one filed under another's is reported as substituted.
    head
        The signed head ``{"node", "seq", "hash", "key", "sig"}``, or None to skip that check
        (a live node's chain read while it appends).
    expected_fingerprint
        The node's certificate as pinned by its peers; the chain must end at it.
    """
    rep = Report()
    certs, rep.problems = index_certificates(("certificate", fp, pem) for fp, pem in certs.items())
    prev, expect_seq, key = GENESIS, 1, ""
    hashes_by_seq: dict[int, str] = {}
    keys_used: set[str] = set()
    suite = ""
    jobs_recorded: set[str] = set()
    for i, stored in enumerate(entries, start=1):
        rep.entries += 1
        where = f"entry {i}"
        try:
            e = stored["entry"]
            given_hash, sig = str(stored["hash"]), str(stored["sig"])
            seq, node, kind = int(e["seq"]), str(e["node"]), str(e["kind"])
            e_suite, e_key = str(e["suite"]), str(e["key"])
        except (KeyError, TypeError, ValueError):
            rep.problems.append(f"{where}: malformed entry")
            prev, expect_seq = "", expect_seq + 1
            continue
        where = f"entry seq {seq} ({kind})"
        if i == 1:
            rep.node, suite, key, rep.first_key = node, e_suite, e_key, e_key
        if e_suite not in SUITES or e_suite != suite:
            rep.problems.append(f"{where}: suite {e_suite!r} differs from the ledger's")
        if node != rep.node:
            rep.problems.append(f"{where}: written by {node!r}, not {rep.node!r} (replayed?)")
        actual = entry_hash(e)
        if actual != given_hash:
            rep.problems.append(f"{where}: content does not match its hash (edited)")
        if seq != expect_seq:
            rep.problems.append(
                f"{where}: expected seq {expect_seq} (an entry was deleted, inserted or moved)"
            )
        if e.get("prev") != prev:
            rep.problems.append(f"{where}: does not follow the previous entry (chain broken)")
        if e_key != key:
            rep.problems.append(f"{where}: signed with key {e_key[:16]}…, not the node's current")
        why = _check_signed(certs, e_key, sig, bytes.fromhex(actual))
        if why:
            rep.problems.append(f"{where}: {why}")
        body = e.get("body") if isinstance(e.get("body"), dict) else {}
        if kind == "key_rotated":
            new = str(body.get("new_key", ""))
            why = _check_signed(
                certs,
                e_key,
                str(body.get("handover_sig", "")),
                ROTATION_DOMAIN + bytes.fromhex(new or "00"),
            )
            if why or new not in certs:
                rep.problems.append(f"{where}: the hand-over to {new[:16]}… is not valid")
            else:
                key = new
        if kind == "job_record":
            rep.job_records += 1
            record, sigs = body.get("record"), body.get("signatures")
            if not isinstance(record, dict) or not isinstance(sigs, dict):
                rep.problems.append(f"{where}: malformed job record")
            else:
                if record.get("job_id") != e.get("job"):
                    rep.problems.append(f"{where}: the record is of another job (replayed)")
                if e.get("job") in jobs_recorded:
                    rep.problems.append(f"{where}: a second record of job {e.get('job')}")
                jobs_recorded.add(str(e.get("job")))
                rep.problems += [f"{where}: {p}" for p in check_record(record, sigs, certs)]
        hashes_by_seq[seq] = given_hash
        keys_used.add(key)
        prev, expect_seq = given_hash, seq + 1
    rep.last_key, rep.head = key, prev
    if head is not None and not isinstance(head, dict):
        rep.problems.append("the signed head is not a JSON object")
    elif head is not None:
        head_seq = head.get("seq")
        if rep.entries == 0:
            rep.problems.append("the ledger is empty")
        elif not isinstance(head_seq, int) or head_seq < 1 or head_seq > expect_seq - 1:
            rep.problems.append(
                f"the signed head names entry {head_seq}, the ledger ends at {expect_seq - 1} "
                "(entries deleted at the end)"
            )
        elif hashes_by_seq.get(head_seq) != head.get("hash"):
            rep.problems.append(f"the signed head's entry {head_seq} is not the one in the ledger")
        msg = HEAD_DOMAIN + canonical(
            {"node": head.get("node"), "seq": head_seq, "hash": head.get("hash")}
        )
        why = _check_signed(certs, str(head.get("key")), str(head.get("sig")), msg)
        if why or head.get("key") not in keys_used or head.get("node") != rep.node:
            rep.problems.append(f"the head is not signed by the node's key: {why or ''}")
    if expected_fingerprint:
        want = expected_fingerprint.replace(":", "").lower()
        if key != want:
            rep.problems.append(
                f"the chain ends at certificate {key[:16]}…, not the expected {want[:16]}…"
            )
    return rep


def load_bundle(
    directory: str | Path,
) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, Any] | None]:
    """Entries, certificates and head of an exported bundle."""
    d = Path(directory)
    entries = [json.loads(line) for line in (d / "entries.jsonl").read_text().splitlines() if line]
    certs: dict[str, str] = {}
    for p in sorted((d / "certs").glob("*.pem")):
        pem = p.read_text()
        certs[fingerprint_pem(pem)] = pem  # by content, never trusting the file name
    head_path = d / "head.json"
    head = json.loads(head_path.read_text()) if head_path.is_file() else None
    return entries, certs, head


def verify_bundle(directory: str | Path, expected_fingerprint: str | None = None) -> Report:
    try:
        entries, certs, head = load_bundle(directory)
    except (OSError, ValueError) as exc:
        return Report(problems=[f"cannot read the bundle: {exc}"])
    if head is None:
        rep = verify_entries(entries, certs, {}, expected_fingerprint)
        rep.problems.append("the bundle has no head.json")
        return rep
    return verify_entries(entries, certs, head, expected_fingerprint)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Verify an exported Rainbridge ledger bundle.")
    ap.add_argument("bundle", help="the bundle directory (from `rainbridge ledger export`)")
    ap.add_argument("--fingerprint", help="the node's certificate fingerprint, as pinned")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    import cryptography

    try:
        have = tuple(int(x) for x in cryptography.__version__.split(".")[:2])
    except ValueError:
        have = MIN_CRYPTOGRAPHY
    if have < MIN_CRYPTOGRAPHY:
        need = ".".join(map(str, MIN_CRYPTOGRAPHY))
        print(
            f"verify_ledger.py needs cryptography {need} or later; this Python has "
            f"{cryptography.__version__} (pip install 'cryptography>={need}')",
            file=sys.stderr,
        )
        return 2
    rep = verify_bundle(args.bundle, args.fingerprint)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    elif rep.ok:
        print(
            f"OK: ledger of {rep.node}, {rep.entries} entries, {rep.job_records} job records, "
            f"head {rep.head[:16]}…, signed by certificate {rep.last_key}"
        )
    else:
        print(f"FAILED: ledger of {rep.node or '?'}, {len(rep.problems)} problem(s):")
        for p in rep.problems:
            print(f"  - {p}")
    return 0 if rep.ok else EXIT_TAMPERED


if __name__ == "__main__":
    sys.exit(main())
