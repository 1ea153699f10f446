//! One call as the layers see it. The outermost layer (`layers::call`)
//! makes a [`CallContext`] for every request and passes it down with the
//! request as a [`Call`]; each layer fills in what it learns (the
//! authorization outcome, the error the proxy answered with), and the
//! response body ([`ResponseBody`]) tells the call's observers (metrics,
//! audit) how it ended. Nothing rides in request or response extensions.
//!
//! Also here: the count of a connection's open calls (`activity`), which a
//! call holds until its response ends.

pub mod activity;
pub mod body;
pub mod context;

pub use body::ResponseBody;
pub use context::{AuthzOutcome, Call, CallContext, CallObserver, Ending};
