//! One tower layer per file. The order they run in is decided in one place:
//! `crate::server::stack`.

pub mod activity;
pub mod audit;
pub mod authz;
pub mod identity_header;
pub mod local_health;
pub mod message_size;
pub mod path;
pub mod rescue;
