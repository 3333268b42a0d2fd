//! The workspace's root package: it only hosts the runnable examples (`examples/`) and the
//! cross-crate tests (`tests/`). The library users depend on is `worker-runtime`.
