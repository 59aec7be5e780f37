"""etcdproxy guard: a method-level gate in front of a tenant's etcd grpc-proxy."""

__version__ = "0.1.0"
