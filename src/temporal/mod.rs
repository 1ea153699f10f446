//! What is specific to Temporal: the table of its gRPC methods (`methods`),
//! the protobuf wire reader that finds the namespace in a request (`wire`),
//! and what else a request acts on: namespaces named inside it and task
//! tokens (`nested`).

pub mod methods;
pub mod nested;
pub mod wire;
