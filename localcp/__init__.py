"""Local control plane and operator launcher used by tests, `make demo` and `make cluster-up`."""
