//! Puts what is known about the connection (peer address, verified client
//! certificate) into each request's extensions, for the layers below.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::server::ConnectionInfo;

#[derive(Clone)]
pub struct ConnectionInfoLayer {
    info: Arc<ConnectionInfo>,
}

impl ConnectionInfoLayer {
    pub fn new(info: Arc<ConnectionInfo>) -> Self {
        ConnectionInfoLayer { info }
    }
}

impl<S> Layer<S> for ConnectionInfoLayer {
    type Service = WithConnectionInfo<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithConnectionInfo {
            inner,
            info: self.info.clone(),
        }
    }
}

#[derive(Clone)]
pub struct WithConnectionInfo<S> {
    inner: S,
    info: Arc<ConnectionInfo>,
}

impl<S, B> Service<Request<B>> for WithConnectionInfo<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        self.inner.call(req)
    }
}
