//! One tower layer per file. The order they run in is decided in one place:
//! `crate::server::stack`.

pub mod connection_info;
pub mod rescue;
