//! The audit log: one JSON line per call (`line`), written by a task that
//! never makes a call wait (`sink`). The layer that writes them is
//! `crate::layers::audit`.

pub mod line;
pub mod sink;
