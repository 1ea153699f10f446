//! The audit log: one JSON line per call (`record`), written by a task that
//! never makes a call wait (`sink`). The layer that makes the records is
//! `crate::layers::audit`.

pub mod record;
pub mod sink;
