//! What is specific to Temporal: the table of its gRPC methods (`methods`)
//! and the protobuf wire reader that finds the namespace in a request
//! (`wire`).

pub mod methods;
pub mod wire;
