//! Shared helpers for the integration tests: a test PKI made with rcgen at
//! run time, the real Temporal dev server, real clients (the `temporal` CLI,
//! the Python SDK, a raw gRPC client), and the proxy itself: run in the test's
//! process, or the binary as a child process (`proxy`).
#![allow(dead_code)]

pub mod cli;
pub mod fake_upstream;
pub mod fault_upstream;
pub mod grpc;
pub mod issuer;
pub mod pki;
pub mod proxy;
pub mod python;
pub mod raw_h2;
pub mod temporal;
pub mod tools;
pub mod typescript;
