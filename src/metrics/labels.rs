//! The label sets of the metric families, and the bounded set of namespace
//! label values.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::encoding::EncodeLabelSet;

use super::{MAX_NAMESPACE_LABEL_LEN, OTHER};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabels {
    pub(super) reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ClientLabels {
    pub(super) client: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CallLabels {
    pub(super) method: &'static str,
    pub(super) namespace: Arc<str>,
    pub(super) grpc_status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabels {
    pub(super) method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AuthzLabels {
    pub(super) rule: Arc<str>,
    pub(super) decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DirectionLabels {
    pub(super) direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EventLabels {
    pub(super) event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub(super) result: &'static str,
}

/// The namespace label values: the first `cap` distinct names, then
/// `other`.
///
/// A call takes the read lock and, on a hit, clones an `Arc<str>`; only a
/// namespace seen for the first time (at most `cap` times over the process's
/// life) takes the write lock. Readers never wait on each other.
#[derive(Debug)]
pub(super) struct NamespaceLabels {
    pub(super) cap: usize,
    pub(super) kept: RwLock<HashSet<Arc<str>>>,
    pub(super) other: Arc<str>,
    pub(super) none: Arc<str>,
}

impl NamespaceLabels {
    pub(super) fn new(cap: usize) -> NamespaceLabels {
        NamespaceLabels {
            cap,
            kept: RwLock::new(HashSet::new()),
            other: Arc::from(OTHER),
            none: Arc::from(""),
        }
    }

    pub(super) fn label(&self, namespace: Option<&str>) -> Arc<str> {
        let namespace = match namespace {
            None | Some("") => return Arc::clone(&self.none),
            Some(n) if n.len() > MAX_NAMESPACE_LABEL_LEN => return Arc::clone(&self.other),
            Some(n) => n,
        };
        // A panic while holding the lock cannot leave the set inconsistent
        // (an insert either happened or not), so a poisoned lock is used as is.
        {
            let kept = self.kept.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(label) = kept.get(namespace) {
                return Arc::clone(label);
            }
            if kept.len() >= self.cap {
                return Arc::clone(&self.other);
            }
        }
        let mut kept = self.kept.write().unwrap_or_else(PoisonError::into_inner);
        // Another call may have filled the last place, or added this very
        // name, between the two locks.
        if let Some(label) = kept.get(namespace) {
            return Arc::clone(label);
        }
        if kept.len() >= self.cap {
            return Arc::clone(&self.other);
        }
        let label: Arc<str> = Arc::from(namespace);
        kept.insert(Arc::clone(&label));
        label
    }
}
