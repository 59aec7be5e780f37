"""The etcd v3 API messages the operator (backup and restore, module_utils/coregrpc.py), the tests and the
benchmark encode or decode with raw gRPC.

Field numbers follow etcd's ``api/etcdserverpb/rpc.proto`` and ``api/mvccpb/kv.proto``
(v3.6). The schema is declared here with protobuf's descriptor API instead of generated code,
so there is no build step and no dependency on etcd's gogoproto annotations. Only the messages
used are declared. The one home of these messages: localcp and the tests import them from here.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto

# (name, number, type, label, message type name or "")
_Field = tuple[str, int, int, int, str]

# RangeRequest.SortOrder and RangeRequest.SortTarget.
SORT_NONE, SORT_ASCEND, SORT_DESCEND = 0, 1, 2
SORT_BY_KEY, SORT_BY_VERSION, SORT_BY_CREATE, SORT_BY_MOD, SORT_BY_VALUE = 0, 1, 2, 3, 4

_OPT = _F.LABEL_OPTIONAL
_REP = _F.LABEL_REPEATED

_MESSAGES: dict[str, list[_Field]] = {
    "ResponseHeader": [
        ("cluster_id", 1, _F.TYPE_UINT64, _OPT, ""),
        ("member_id", 2, _F.TYPE_UINT64, _OPT, ""),
        ("revision", 3, _F.TYPE_INT64, _OPT, ""),
        ("raft_term", 4, _F.TYPE_UINT64, _OPT, ""),
    ],
    "KeyValue": [
        ("key", 1, _F.TYPE_BYTES, _OPT, ""),
        ("create_revision", 2, _F.TYPE_INT64, _OPT, ""),
        ("mod_revision", 3, _F.TYPE_INT64, _OPT, ""),
        ("version", 4, _F.TYPE_INT64, _OPT, ""),
        ("value", 5, _F.TYPE_BYTES, _OPT, ""),
        ("lease", 6, _F.TYPE_INT64, _OPT, ""),
    ],
    "RangeRequest": [
        ("key", 1, _F.TYPE_BYTES, _OPT, ""),
        ("range_end", 2, _F.TYPE_BYTES, _OPT, ""),
        ("limit", 3, _F.TYPE_INT64, _OPT, ""),
        ("revision", 4, _F.TYPE_INT64, _OPT, ""),
        ("sort_order", 5, _F.TYPE_INT32, _OPT, ""),  # enums on the wire: SORT_* below
        ("sort_target", 6, _F.TYPE_INT32, _OPT, ""),
        ("serializable", 7, _F.TYPE_BOOL, _OPT, ""),
        ("keys_only", 8, _F.TYPE_BOOL, _OPT, ""),
        ("count_only", 9, _F.TYPE_BOOL, _OPT, ""),
        ("min_mod_revision", 10, _F.TYPE_INT64, _OPT, ""),
        ("max_mod_revision", 11, _F.TYPE_INT64, _OPT, ""),
        ("min_create_revision", 12, _F.TYPE_INT64, _OPT, ""),
        ("max_create_revision", 13, _F.TYPE_INT64, _OPT, ""),
    ],
    "RangeResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _OPT, "ResponseHeader"),
        ("kvs", 2, _F.TYPE_MESSAGE, _REP, "KeyValue"),
        ("more", 3, _F.TYPE_BOOL, _OPT, ""),
        ("count", 4, _F.TYPE_INT64, _OPT, ""),
    ],
    "PutRequest": [
        ("key", 1, _F.TYPE_BYTES, _OPT, ""),
        ("value", 2, _F.TYPE_BYTES, _OPT, ""),
        ("lease", 3, _F.TYPE_INT64, _OPT, ""),
    ],
    "PutResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _OPT, "ResponseHeader"),
    ],
    "DeleteRangeRequest": [
        ("key", 1, _F.TYPE_BYTES, _OPT, ""),
        ("range_end", 2, _F.TYPE_BYTES, _OPT, ""),
    ],
    "DeleteRangeResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _OPT, "ResponseHeader"),
        ("deleted", 2, _F.TYPE_INT64, _OPT, ""),
    ],
    # Compare/RequestOp/ResponseOp declare their oneof members as plain optional fields: same wire format.
    "Compare": [
        ("result", 1, _F.TYPE_INT32, _OPT, ""),  # EQUAL=0 GREATER=1 LESS=2 NOT_EQUAL=3
        ("target", 2, _F.TYPE_INT32, _OPT, ""),  # VERSION=0 CREATE=1 MOD=2 VALUE=3 LEASE=4
        ("key", 3, _F.TYPE_BYTES, _OPT, ""),
        ("version", 4, _F.TYPE_INT64, _OPT, ""),
        ("create_revision", 5, _F.TYPE_INT64, _OPT, ""),
        ("mod_revision", 6, _F.TYPE_INT64, _OPT, ""),
        ("value", 7, _F.TYPE_BYTES, _OPT, ""),
        ("lease", 8, _F.TYPE_INT64, _OPT, ""),
        ("range_end", 64, _F.TYPE_BYTES, _OPT, ""),
    ],
    "RequestOp": [
        ("request_range", 1, _F.TYPE_MESSAGE, _OPT, "RangeRequest"),
        ("request_put", 2, _F.TYPE_MESSAGE, _OPT, "PutRequest"),
        ("request_delete_range", 3, _F.TYPE_MESSAGE, _OPT, "DeleteRangeRequest"),
        ("request_txn", 4, _F.TYPE_MESSAGE, _OPT, "TxnRequest"),
    ],
    "ResponseOp": [
        ("response_range", 1, _F.TYPE_MESSAGE, _OPT, "RangeResponse"),
        ("response_put", 2, _F.TYPE_MESSAGE, _OPT, "PutResponse"),
        ("response_delete_range", 3, _F.TYPE_MESSAGE, _OPT, "DeleteRangeResponse"),
        ("response_txn", 4, _F.TYPE_MESSAGE, _OPT, "TxnResponse"),
    ],
    "TxnRequest": [
        ("compare", 1, _F.TYPE_MESSAGE, _REP, "Compare"),
        ("success", 2, _F.TYPE_MESSAGE, _REP, "RequestOp"),
        ("failure", 3, _F.TYPE_MESSAGE, _REP, "RequestOp"),
    ],
    "TxnResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _OPT, "ResponseHeader"),
        ("succeeded", 2, _F.TYPE_BOOL, _OPT, ""),
        ("responses", 3, _F.TYPE_MESSAGE, _REP, "ResponseOp"),
    ],
    "WatchCreateRequest": [
        ("key", 1, _F.TYPE_BYTES, _OPT, ""),
        ("range_end", 2, _F.TYPE_BYTES, _OPT, ""),
        ("start_revision", 3, _F.TYPE_INT64, _OPT, ""),
        ("progress_notify", 4, _F.TYPE_BOOL, _OPT, ""),
        ("prev_kv", 6, _F.TYPE_BOOL, _OPT, ""),
    ],
    "WatchCancelRequest": [
        ("watch_id", 1, _F.TYPE_INT64, _OPT, ""),
    ],
    "WatchProgressRequest": [],
    "WatchRequest": [
        ("create_request", 1, _F.TYPE_MESSAGE, _OPT, "WatchCreateRequest"),
        ("cancel_request", 2, _F.TYPE_MESSAGE, _OPT, "WatchCancelRequest"),
        ("progress_request", 3, _F.TYPE_MESSAGE, _OPT, "WatchProgressRequest"),
    ],
    "Event": [
        ("type", 1, _F.TYPE_INT32, _OPT, ""),  # PUT=0 DELETE=1
        ("kv", 2, _F.TYPE_MESSAGE, _OPT, "KeyValue"),
        ("prev_kv", 3, _F.TYPE_MESSAGE, _OPT, "KeyValue"),
    ],
    "WatchResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _OPT, "ResponseHeader"),
        ("watch_id", 2, _F.TYPE_INT64, _OPT, ""),
        ("created", 3, _F.TYPE_BOOL, _OPT, ""),
        ("canceled", 4, _F.TYPE_BOOL, _OPT, ""),
        ("compact_revision", 5, _F.TYPE_INT64, _OPT, ""),
        ("cancel_reason", 6, _F.TYPE_STRING, _OPT, ""),
        ("events", 11, _F.TYPE_MESSAGE, _REP, "Event"),
    ],
    "LeaseGrantRequest": [
        ("TTL", 1, _F.TYPE_INT64, _OPT, ""),
        ("ID", 2, _F.TYPE_INT64, _OPT, ""),
    ],
    "LeaseGrantResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _OPT, "ResponseHeader"),
        ("ID", 2, _F.TYPE_INT64, _OPT, ""),
        ("TTL", 3, _F.TYPE_INT64, _OPT, ""),
        ("error", 4, _F.TYPE_STRING, _OPT, ""),
    ],
    "LeaseRevokeRequest": [
        ("ID", 1, _F.TYPE_INT64, _OPT, ""),
    ],
    "CompactionRequest": [
        ("revision", 1, _F.TYPE_INT64, _OPT, ""),
        ("physical", 2, _F.TYPE_BOOL, _OPT, ""),
    ],
    "AlarmRequest": [
        ("action", 1, _F.TYPE_INT32, _OPT, ""),  # enum AlarmAction: GET=0 ACTIVATE=1 DEACTIVATE=2
        ("memberID", 2, _F.TYPE_UINT64, _OPT, ""),
        ("alarm", 3, _F.TYPE_INT32, _OPT, ""),  # enum AlarmType: NONE=0 NOSPACE=1 CORRUPT=2
    ],
    "StatusRequest": [],
    "StatusResponse": [
        ("header", 1, _F.TYPE_MESSAGE, _OPT, "ResponseHeader"),
        ("version", 2, _F.TYPE_STRING, _OPT, ""),
        ("dbSize", 3, _F.TYPE_INT64, _OPT, ""),
        ("leader", 4, _F.TYPE_UINT64, _OPT, ""),
        ("raftIndex", 5, _F.TYPE_UINT64, _OPT, ""),
        ("raftTerm", 6, _F.TYPE_UINT64, _OPT, ""),
        ("raftAppliedIndex", 7, _F.TYPE_UINT64, _OPT, ""),
        ("errors", 8, _F.TYPE_STRING, _REP, ""),
        ("dbSizeInUse", 9, _F.TYPE_INT64, _OPT, ""),
        ("isLearner", 10, _F.TYPE_BOOL, _OPT, ""),
        ("dbSizeQuota", 12, _F.TYPE_INT64, _OPT, ""),
    ],
}

_PACKAGE = "etcdproxy.etcdserverpb"


def _build() -> dict[str, type]:
    fdp = descriptor_pb2.FileDescriptorProto(name="etcdproxy/etcd_subset.proto", package=_PACKAGE,
                                             syntax="proto3")
    for name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label, json_name=fname)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    file_desc = pool.FindFileByName(fdp.name)
    return {name: message_factory.GetMessageClass(file_desc.message_types_by_name[name]) for name in _MESSAGES}


_CLASSES = _build()

ResponseHeader = _CLASSES["ResponseHeader"]
KeyValue = _CLASSES["KeyValue"]
RangeRequest = _CLASSES["RangeRequest"]
RangeResponse = _CLASSES["RangeResponse"]
PutRequest = _CLASSES["PutRequest"]
PutResponse = _CLASSES["PutResponse"]
DeleteRangeRequest = _CLASSES["DeleteRangeRequest"]
DeleteRangeResponse = _CLASSES["DeleteRangeResponse"]
LeaseGrantRequest = _CLASSES["LeaseGrantRequest"]
LeaseGrantResponse = _CLASSES["LeaseGrantResponse"]
LeaseRevokeRequest = _CLASSES["LeaseRevokeRequest"]
CompactionRequest = _CLASSES["CompactionRequest"]
AlarmRequest = _CLASSES["AlarmRequest"]
StatusRequest = _CLASSES["StatusRequest"]
Compare = _CLASSES["Compare"]
RequestOp = _CLASSES["RequestOp"]
TxnRequest = _CLASSES["TxnRequest"]
TxnResponse = _CLASSES["TxnResponse"]
WatchCreateRequest = _CLASSES["WatchCreateRequest"]
WatchCancelRequest = _CLASSES["WatchCancelRequest"]
WatchProgressRequest = _CLASSES["WatchProgressRequest"]
WatchRequest = _CLASSES["WatchRequest"]
WatchResponse = _CLASSES["WatchResponse"]
StatusResponse = _CLASSES["StatusResponse"]
