//! Hand-written protobuf and gRPC encoding for the tests and the benchmark
//! tools of temporal-mtls-proxy: the one copy of it in the workspace.
//!
//! * [`pb`]: protobuf varints, tags and fields, and a small top-level
//!   decoder (enough to read a field out of a response);
//! * [`grpc`]: the 5-byte length prefix of gRPC messages;
//! * [`temporal`]: the method paths, the few Temporal requests the tests and
//!   the load generator send, and the responses the fake frontend answers.
//!
//! No code generation, on purpose: what goes on the wire is spelled out
//! field by field, and a test can as easily build a message no SDK would
//! send. This crate is for tests and tools only: the proxy reads protobuf
//! with its own bounded parser (under `src/temporal/`) and depends on
//! nothing here (a dev-dependency of its tests only).

pub mod grpc;
pub mod pb;
pub mod temporal;
