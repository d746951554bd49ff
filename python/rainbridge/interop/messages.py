"""The interconnection standard's messages used by ECDH-PSI (PPCA 9—2023 and the open
``interconnection`` definitions), as :mod:`rainbridge.interop.pb` schemas, with their enums.

Field numbers and types follow the published ``.proto`` files exactly: they are the wire
contract. Names are the published ones, so a reader can hold this file next to the standard.
"""

from __future__ import annotations

from rainbridge.interop.pb import ANY, Field, Schema

# -- org.interconnection (common/header.proto) -----------------------------------------------

OK = 0
GENERIC_ERROR = 31100000
UNEXPECTED_ERROR = 31100001
NETWORK_ERROR = 31100002
INVALID_REQUEST = 31100100
INVALID_RESOURCE = 31100101
HANDSHAKE_REFUSED = 31100200
UNSUPPORTED_VERSION = 31100201
UNSUPPORTED_ALGO = 31100202
UNSUPPORTED_PARAMS = 31100203

RESPONSE_HEADER = Schema(
    "org.interconnection.ResponseHeader",
    (Field(1, "error_code", "int32"), Field(2, "error_msg", "string")),
)

# -- org.interconnection.link (link/transport.proto) -----------------------------------------

MONO, CHUNKED = 0, 1
CHUNK_INFO = Schema(
    "org.interconnection.link.ChunkInfo",
    (Field(1, "message_length", "uint64"), Field(2, "chunk_offset", "uint64")),
)
PUSH_REQUEST = Schema(
    "org.interconnection.link.PushRequest",
    (
        Field(1, "sender_rank", "uint64"),
        Field(2, "key", "string"),
        Field(3, "value", "bytes"),
        Field(4, "trans_type", "enum"),
        Field(5, "chunk_info", CHUNK_INFO),
    ),
)
PUSH_RESPONSE = Schema(
    "org.interconnection.link.PushResponse", (Field(1, "header", RESPONSE_HEADER),)
)
PUSH_METHOD = "/org.interconnection.link.ReceiverService/Push"

# -- org.interconnection.v2 (handshake/entry.proto) ------------------------------------------

HANDSHAKE_VERSION = 2
ALGO_TYPE_ECDH_PSI = 1
PROTOCOL_FAMILY_ECC = 1

HANDSHAKE_REQUEST = Schema(
    "org.interconnection.v2.HandshakeRequest",
    (
        Field(1, "version", "int32"),
        Field(2, "requester_rank", "int32"),
        Field(3, "supported_algos", "int32", repeated=True),
        Field(4, "algo_params", ANY, repeated=True),
        Field(5, "ops", "int32", repeated=True),
        Field(6, "op_params", ANY, repeated=True),
        Field(7, "protocol_families", "int32", repeated=True),
        Field(8, "protocol_family_params", ANY, repeated=True),
        Field(9, "io_param", ANY),
    ),
)
HANDSHAKE_RESPONSE = Schema(
    "org.interconnection.v2.HandshakeResponse",
    (
        Field(1, "header", RESPONSE_HEADER),
        Field(2, "algo", "int32"),
        Field(3, "algo_param", ANY),
        Field(4, "ops", "int32", repeated=True),
        Field(5, "op_params", ANY, repeated=True),
        Field(6, "protocol_families", "int32", repeated=True),
        Field(7, "protocol_family_params", ANY, repeated=True),
        Field(8, "io_param", ANY),
    ),
)

# -- org.interconnection.v2.protocol (handshake/protocol_family/ecc.proto) -------------------

CURVE_TYPE_CURVE25519 = 1
CURVE_TYPE_SM2 = 2
HASH_TYPE_SM3 = 1
HASH_TYPE_SHA_256 = 11
HASH_TO_CURVE_STRATEGY_TRY_AND_INCREMENT = 1
HASH_TO_CURVE_STRATEGY_DIRECT_HASH_AS_POINT_X = 3
POINT_OCTET_FORMAT_UNCOMPRESSED = 1
POINT_OCTET_FORMAT_X962_COMPRESSED = 2

EC_SUIT = Schema(
    "org.interconnection.v2.protocol.EcSuit",
    (
        Field(1, "curve", "int32"),
        Field(2, "hash", "int32"),
        Field(3, "hash2curve_strategy", "int32"),
    ),
)
ECC_PROTOCOL_PROPOSAL = Schema(
    "org.interconnection.v2.protocol.EccProtocolProposal",
    (
        Field(1, "supported_versions", "int32", repeated=True),
        Field(2, "ec_suits", EC_SUIT, repeated=True),
        Field(3, "point_octet_formats", "int32", repeated=True),
        Field(4, "support_point_truncation", "bool"),
    ),
)
ECC_PROTOCOL_RESULT = Schema(
    "org.interconnection.v2.protocol.EccProtocolResult",
    (
        Field(1, "version", "int32"),
        Field(2, "ec_suit", EC_SUIT),
        Field(3, "point_octet_format", "int32"),
        Field(4, "bit_length_after_truncated", "int32"),
    ),
)

# -- org.interconnection.v2.algos (handshake/algos/psi.proto) --------------------------------

PSI_DATA_IO_PROPOSAL = Schema(
    "org.interconnection.v2.algos.PsiDataIoProposal",
    (
        Field(1, "supported_versions", "int32", repeated=True),
        Field(2, "item_num", "int64"),
        Field(3, "result_to_rank", "int32"),
    ),
)
PSI_DATA_IO_RESULT = Schema(
    "org.interconnection.v2.algos.PsiDataIoResult",
    (Field(1, "version", "int32"), Field(2, "result_to_rank", "int32")),
)

# -- org.interconnection.v2.runtime (runtime/ecdh_psi.proto) ---------------------------------

ECDH_PSI_CIPHER_BATCH = Schema(
    "org.interconnection.v2.runtime.EcdhPsiCipherBatch",
    (
        Field(1, "type", "string"),
        Field(3, "batch_index", "int32"),
        Field(4, "is_last_batch", "bool"),
        Field(6, "count", "int32"),
        Field(7, "ciphertext", "bytes"),
        Field(8, "duplicate_item_cnt_map", "map<uint32,uint32>"),
    ),
)
