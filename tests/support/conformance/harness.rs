//! The differential harness: one real dev server and one real proxy in
//! front of it; each row (a request shape, built byte by byte) is sent
//! directly to the frontend over h2c and through the proxy over mTLS with
//! two certificates at once (`payments`: worker + writer on `payments`
//! only; `admin`: admin on every namespace, so that policy does not hide the
//! protocol behaviour). A bystander long poll on `billing` (a third
//! certificate) is in flight through the proxy during every row. The
//! outcomes are classified, effects are checked on the real server
//! afterwards, and every row is reported (all rows run; failures are
//! collected, not raised one by one).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::enc;
use crate::support::grpc::{self, code, pb, ClientTls, GrpcConn};
use crate::support::pki::{ClientCert, ClientSpec, TestPki};
use crate::support::proxy::{config, ProxyProcess};
use crate::support::raw_h2::{self, error_code, Field, H2Conn, H2Options, Outcome, Step};
use crate::support::temporal::{TemporalOpts, TemporalServer};

pub const PAYMENTS: &str = "payments";
pub const BILLING: &str = "billing";
/// A workflow started in both namespaces at set-up, the target of signals.
pub const SIGNAL_TARGET: &str = "sig-target";
/// The task queue of workflows nobody works on.
pub const IDLE_QUEUE: &str = "conformance-idle";

const POLICY: &str = r#"
[authz]
mode = "enforce"

[[authz.rule]]
name = "payments-only"
match = { cn = "conf-payments" }
namespaces = ["payments"]
roles = ["worker", "writer"]

[[authz.rule]]
name = "billing-only"
match = { cn = "conf-billing" }
namespaces = ["billing"]
roles = ["worker", "writer"]

[[authz.rule]]
name = "everything"
match = { cn = "conf-admin" }
namespaces = ["*"]
roles = ["admin"]
"#;

/// Where a shape is sent, and as whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// To the dev server over h2c.
    Direct,
    /// Through the proxy with the payments-only certificate.
    Payments,
    /// Through the proxy with the certificate granted every namespace.
    Admin,
}

impl Variant {
    pub fn letter(self) -> &'static str {
        match self {
            Variant::Direct => "d",
            Variant::Payments => "p",
            Variant::Admin => "a",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Variant::Direct => "direct",
            Variant::Payments => "proxy/payments-cert",
            Variant::Admin => "proxy/admin-cert",
        }
    }
}

/// What a shape builder knows about where it is sent.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub scheme: &'static str,
    pub authority: String,
    /// Unique per row and variant: names workflows, signals, queues.
    pub tag: String,
    pub prep: Prep,
}

impl Ctx {
    /// gRPC's request headers for `path` (`:method`, `:scheme`, `:path`,
    /// `:authority`, `content-type`, `te`).
    pub fn headers(&self, path: &str) -> Vec<Field> {
        raw_h2::grpc_headers(self.scheme, &self.authority, path)
    }
    pub fn wf(&self) -> String {
        format!("wf-{}", self.tag)
    }
    pub fn sig(&self) -> String {
        format!("sig-{}", self.tag)
    }
    pub fn child(&self) -> String {
        format!("child-{}", self.tag)
    }
    pub fn xsig(&self) -> String {
        format!("xsig-{}", self.tag)
    }
    pub fn queue(&self) -> String {
        format!("q-{}", self.tag)
    }
}

/// Server state a row needs before it is sent (made directly on the dev
/// server, once per variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrepKind {
    None,
    /// An activity task of a workflow in `billing`: its token.
    BillingActivityTask,
    /// A workflow task of a workflow in `billing`: its token.
    BillingWorkflowTask,
    /// A workflow task of a workflow in `payments` (its token), and a
    /// target workflow with the same id in `billing` and `payments`.
    PaymentsWorkflowTask,
}

#[derive(Clone, Debug, Default)]
pub struct Prep {
    pub token: Vec<u8>,
    /// The workflow the token belongs to.
    pub workflow: String,
    /// A workflow to signal or cancel (exists in both namespaces).
    pub target: String,
}

/// What to look for on the server after the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Which namespace an OK DescribeNamespace answer describes.
    Describe,
    /// Whether workflow `ctx.wf()` exists in payments / billing.
    Workflow,
    /// Whether signal `ctx.sig()` reached `SIGNAL_TARGET` in payments / billing.
    Signal,
    /// Whether the activity of `prep.workflow` (billing) completed.
    ActivityCompleted,
    /// Whether the workflow task of `prep.workflow` (billing) completed.
    WorkflowTaskCompleted,
    /// Whether child `ctx.child()` exists in payments / billing.
    ChildStarted,
    /// Whether `prep.target` got signal `ctx.xsig()` in payments / billing.
    ExternalSignaled,
    /// Whether `prep.target` got a cancel request in payments / billing.
    CancelRequested,
}

/// How much the proxy may differ from the frontend on a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tolerance {
    /// Same class: same grpc-status, or both RST_STREAM with the same code,
    /// or both a connection-level failure.
    Exact,
    /// The shape is malformed HTTP/2 or gRPC: the proxy may refuse this one
    /// call (any non-OK status or RST_STREAM) whatever the frontend does,
    /// but never fail at connection level.
    Refusal,
    /// The proxy may also normalise the shape (e.g. drop request trailers,
    /// supply `:authority`) and let the call succeed; only a
    /// connection-level failure (or no answer) is wrong.
    Lenient,
}

pub type Build = Arc<dyn Fn(&Ctx) -> Vec<Step> + Send + Sync>;

/// One shape of the table.
#[derive(Clone)]
pub struct Row {
    pub group: &'static str,
    pub name: String,
    pub build: Build,
    /// Sent first on the same connection (its outcome is only recorded).
    pub warmup: Option<Build>,
    pub effect: Effect,
    pub prep: PrepKind,
    /// The shape acts on (or could act on) a namespace the payments
    /// certificate is not granted: PERMISSION_DENIED from the proxy is an
    /// acceptable, stricter answer for that certificate.
    pub not_granted: bool,
    /// Other grpc-status codes the proxy may answer instead of the
    /// frontend's (for both certificates), e.g. INVALID_ARGUMENT for a
    /// `temporal-namespace` header that disagrees with the body.
    pub stricter: Vec<i32>,
    pub tolerance: Tolerance,
    /// When the proxy answers the frontend's status, its grpc-message must
    /// start with the frontend's text (SDKs parse some of them).
    pub check_message: bool,
    /// Run also against servers with non-default namespace options.
    pub ns_relevant: bool,
    pub timeout: Duration,
    /// Reported, never failed: a known difference the project accepts (the
    /// reason is in `note`).
    pub info: bool,
    pub note: &'static str,
}

impl Row {
    pub fn new(
        group: &'static str,
        name: &str,
        build: impl Fn(&Ctx) -> Vec<Step> + Send + Sync + 'static,
    ) -> Row {
        Row {
            group,
            name: name.to_string(),
            build: Arc::new(build),
            warmup: None,
            effect: Effect::None,
            prep: PrepKind::None,
            not_granted: false,
            stricter: Vec::new(),
            tolerance: Tolerance::Exact,
            check_message: false,
            ns_relevant: false,
            timeout: Duration::from_secs(8),
            info: false,
            note: "",
        }
    }
    /// A known, accepted difference: reported but not failed.
    pub fn info(mut self, why: &'static str) -> Row {
        self.info = true;
        self.note = why;
        self
    }
    pub fn note(mut self, text: &'static str) -> Row {
        self.note = text;
        self
    }
    pub fn effect(mut self, e: Effect) -> Row {
        self.effect = e;
        self
    }
    pub fn prep(mut self, p: PrepKind) -> Row {
        self.prep = p;
        self.ns_relevant = true;
        self
    }
    /// Targets a namespace the payments certificate is not granted.
    pub fn not_granted(mut self) -> Row {
        self.not_granted = true;
        self.ns_relevant = true;
        self
    }
    pub fn stricter(mut self, codes: &[i32]) -> Row {
        self.stricter.extend_from_slice(codes);
        self
    }
    pub fn refusal(mut self) -> Row {
        self.tolerance = Tolerance::Refusal;
        self
    }
    pub fn lenient(mut self) -> Row {
        self.tolerance = Tolerance::Lenient;
        self
    }
    pub fn msg(mut self) -> Row {
        self.check_message = true;
        self
    }
    pub fn ns(mut self) -> Row {
        self.ns_relevant = true;
        self
    }
    pub fn timeout(mut self, t: Duration) -> Row {
        self.timeout = t;
        self
    }
    pub fn warmup(mut self, build: impl Fn(&Ctx) -> Vec<Step> + Send + Sync + 'static) -> Row {
        self.warmup = Some(Arc::new(build));
        self
    }
}

/// The server, the proxy, the certificates.
pub struct Env {
    pub label: String,
    pub temporal: TemporalServer,
    pub pki: TestPki,
    pub proxy: ProxyProcess,
    pub payments: ClientCert,
    pub billing: ClientCert,
    pub admin: ClientCert,
    /// h2c to the dev server, for set-up and effect checks.
    pub direct: GrpcConn,
}

const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

impl Env {
    pub async fn start(label: &str, opts: TemporalOpts) -> Env {
        let mut opts = opts;
        opts.namespaces = vec![PAYMENTS.into(), BILLING.into()];
        let temporal = TemporalServer::start_with(opts).await;
        let pki = TestPki::new();
        let payments = pki.client_cert("conf-payments", ClientSpec::cn("conf-payments"));
        let billing = pki.client_cert("conf-billing", ClientSpec::cn("conf-billing"));
        let admin = pki.client_cert("conf-admin", ClientSpec::cn("conf-admin"));
        let text = format!("{}\n{POLICY}", config(&pki, &temporal.url(), ""));
        let proxy = ProxyProcess::start(&text).await;
        let direct = GrpcConn::connect(temporal.addr, None)
            .await
            .expect("h2c to the dev server");
        let env = Env {
            label: label.to_string(),
            temporal,
            pki,
            proxy,
            payments,
            billing,
            admin,
            direct,
        };
        for ns in [PAYMENTS, BILLING] {
            env.start_workflow(ns, SIGNAL_TARGET, IDLE_QUEUE)
                .await
                .unwrap_or_else(|e| panic!("seed {SIGNAL_TARGET} in {ns}: {e}"));
        }
        env
    }

    pub fn tls(&self, who: &ClientCert) -> ClientTls {
        ClientTls::mtls(&self.pki.ca, &who.cert, &who.key, "localhost")
    }

    pub async fn connect(&self, v: Variant) -> Result<H2Conn, String> {
        let opts = H2Options::default();
        match v {
            Variant::Direct => H2Conn::h2c(self.temporal.addr, &opts).await,
            Variant::Payments => {
                H2Conn::tls(self.proxy.addr, &self.tls(&self.payments), &opts).await
            }
            Variant::Admin => H2Conn::tls(self.proxy.addr, &self.tls(&self.admin), &opts).await,
        }
    }

    /// A call straight to the dev server (set-up, checks).
    pub async fn call(
        &self,
        method: &str,
        msg: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<grpc::GrpcReply, String> {
        self.direct
            .unary_timeout(&enc::method(method), msg, headers, SETUP_TIMEOUT)
            .await
    }

    async fn call_ok(
        &self,
        method: &str,
        msg: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Vec<u8>, String> {
        let r = self.call(method, msg, headers).await?;
        if !r.is_ok() {
            return Err(format!(
                "{method}: grpc-status {:?} {:?}",
                r.grpc_status, r.grpc_message
            ));
        }
        Ok(r.message().to_vec())
    }

    pub async fn start_workflow(&self, ns: &str, id: &str, queue: &str) -> Result<(), String> {
        self.call_ok(
            "StartWorkflowExecution",
            &enc::start_workflow(ns, id, queue),
            &[],
        )
        .await
        .map(|_| ())
    }

    async fn poll_task(&self, method: &str, ns: &str, queue: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .call_ok(method, &enc::poll(ns, queue), &[("grpc-timeout", "10S")])
            .await?;
        let token = pb::task_token(&resp);
        if token.is_empty() {
            return Err(format!("{method} on {ns}/{queue}: no task within 10 s"));
        }
        Ok(token)
    }

    /// Whether workflow `id` exists in `ns` (DescribeWorkflowExecution).
    pub async fn workflow_exists(&self, ns: &str, id: &str) -> Result<bool, String> {
        let r = self
            .call(
                "DescribeWorkflowExecution",
                &enc::describe_workflow(ns, id),
                &[],
            )
            .await?;
        match r.grpc_status {
            Some(code::OK) => Ok(true),
            Some(code::NOT_FOUND) => Ok(false),
            other => Err(format!(
                "DescribeWorkflowExecution {ns}/{id}: {other:?} {:?}",
                r.grpc_message
            )),
        }
    }

    /// The raw GetWorkflowExecutionHistory response of `ns`/`id` (empty if
    /// the workflow does not exist).
    pub async fn history(&self, ns: &str, id: &str) -> Result<Vec<u8>, String> {
        let r = self
            .call(
                "GetWorkflowExecutionHistory",
                &enc::get_history(ns, id),
                &[],
            )
            .await?;
        match r.grpc_status {
            Some(code::OK) => Ok(r.message().to_vec()),
            Some(code::NOT_FOUND) => Ok(Vec::new()),
            other => Err(format!(
                "GetWorkflowExecutionHistory {ns}/{id}: {other:?} {:?}",
                r.grpc_message
            )),
        }
    }

    pub async fn prepare(&self, kind: PrepKind, tag: &str) -> Result<Prep, String> {
        let wf = format!("prep-{tag}");
        let queue = format!("prepq-{tag}");
        match kind {
            PrepKind::None => Ok(Prep::default()),
            PrepKind::BillingWorkflowTask => {
                self.start_workflow(BILLING, &wf, &queue).await?;
                let token = self
                    .poll_task("PollWorkflowTaskQueue", BILLING, &queue)
                    .await?;
                Ok(Prep {
                    token,
                    workflow: wf,
                    target: String::new(),
                })
            }
            PrepKind::BillingActivityTask => {
                self.start_workflow(BILLING, &wf, &queue).await?;
                let wft = self
                    .poll_task("PollWorkflowTaskQueue", BILLING, &queue)
                    .await?;
                self.call_ok(
                    "RespondWorkflowTaskCompleted",
                    &enc::respond_workflow_task_completed(
                        &wft,
                        &[enc::cmd_schedule_activity("act-1", &queue)],
                        BILLING,
                    ),
                    &[],
                )
                .await?;
                let token = self
                    .poll_task("PollActivityTaskQueue", BILLING, &queue)
                    .await?;
                Ok(Prep {
                    token,
                    workflow: wf,
                    target: String::new(),
                })
            }
            PrepKind::PaymentsWorkflowTask => {
                let target = format!("target-{tag}");
                self.start_workflow(BILLING, &target, IDLE_QUEUE).await?;
                self.start_workflow(PAYMENTS, &target, IDLE_QUEUE).await?;
                self.start_workflow(PAYMENTS, &wf, &queue).await?;
                let token = self
                    .poll_task("PollWorkflowTaskQueue", PAYMENTS, &queue)
                    .await?;
                Ok(Prep {
                    token,
                    workflow: wf,
                    target,
                })
            }
        }
    }

    async fn observe(
        &self,
        effect: Effect,
        ctx: &Ctx,
        outcome: &Outcome,
    ) -> Result<EffectObs, String> {
        let both = |p: bool, b: bool, what: &str| EffectObs {
            payments: p,
            billing: b,
            text: match (p, b) {
                (false, false) => format!("no {what}"),
                (true, false) => format!("{what} in payments"),
                (false, true) => format!("{what} in BILLING"),
                (true, true) => format!("{what} in payments and BILLING"),
            },
        };
        let history_has = |h: &[u8], ty: u64| enc::history_event_types(h).contains(&ty);
        match effect {
            Effect::None => Ok(EffectObs::default()),
            Effect::Describe => {
                let name = outcome
                    .response()
                    .filter(|r| r.grpc_status == Some(code::OK))
                    .and_then(|r| pb::namespace_name(&r.message()));
                Ok(match name {
                    Some(n) => EffectObs {
                        payments: n == PAYMENTS,
                        billing: n == BILLING,
                        text: format!("described {n:?}"),
                    },
                    None => EffectObs {
                        text: "nothing described".into(),
                        ..Default::default()
                    },
                })
            }
            Effect::Workflow => {
                let p = self.workflow_exists(PAYMENTS, &ctx.wf()).await?;
                let b = self.workflow_exists(BILLING, &ctx.wf()).await?;
                Ok(both(p, b, "workflow started"))
            }
            Effect::ChildStarted => {
                let p = self.workflow_exists(PAYMENTS, &ctx.child()).await?;
                let b = self.workflow_exists(BILLING, &ctx.child()).await?;
                Ok(both(p, b, "child started"))
            }
            Effect::Signal => {
                let sig = ctx.sig();
                let p = enc::contains(
                    &self.history(PAYMENTS, SIGNAL_TARGET).await?,
                    sig.as_bytes(),
                );
                let b = enc::contains(&self.history(BILLING, SIGNAL_TARGET).await?, sig.as_bytes());
                Ok(both(p, b, "signal recorded"))
            }
            Effect::ExternalSignaled => {
                let sig = ctx.xsig();
                let t = &ctx.prep.target;
                let p = enc::contains(&self.history(PAYMENTS, t).await?, sig.as_bytes());
                let b = enc::contains(&self.history(BILLING, t).await?, sig.as_bytes());
                Ok(both(p, b, "external signal recorded"))
            }
            Effect::CancelRequested => {
                let t = &ctx.prep.target;
                let ty = enc::EV_WORKFLOW_EXECUTION_CANCEL_REQUESTED;
                let p = history_has(&self.history(PAYMENTS, t).await?, ty);
                let b = history_has(&self.history(BILLING, t).await?, ty);
                Ok(both(p, b, "cancel requested"))
            }
            Effect::ActivityCompleted => {
                let h = self.history(BILLING, &ctx.prep.workflow).await?;
                Ok(both(
                    false,
                    history_has(&h, enc::EV_ACTIVITY_TASK_COMPLETED),
                    "activity completed",
                ))
            }
            Effect::WorkflowTaskCompleted => {
                let h = self.history(BILLING, &ctx.prep.workflow).await?;
                Ok(both(
                    false,
                    history_has(&h, enc::EV_WORKFLOW_TASK_COMPLETED),
                    "workflow task completed",
                ))
            }
        }
    }
}

/// What the server shows after a row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EffectObs {
    pub payments: bool,
    pub billing: bool,
    pub text: String,
}

/// One variant's observation.
#[derive(Clone, Debug)]
pub struct Obs {
    pub outcome: Outcome,
    /// A second, valid call on the same connection succeeded.
    pub usable: bool,
    pub usable_detail: String,
    /// GOAWAYs the connection received (during the shape or the check).
    pub goaways: Vec<raw_h2::GoAway>,
    pub warmup: Option<Outcome>,
    pub ctx: Option<Ctx>,
    pub effect: Option<Result<EffectObs, String>>,
    pub frames: Vec<String>,
    pub elapsed: Duration,
}

impl Obs {
    fn failed(why: String) -> Obs {
        Obs {
            outcome: Outcome::SendFailed(why),
            usable: false,
            usable_detail: String::new(),
            goaways: Vec::new(),
            warmup: None,
            ctx: None,
            effect: None,
            frames: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// One line: outcome, GOAWAY seen, connection still usable.
    pub fn summary(&self) -> String {
        let mut s = self.outcome.to_string();
        if !self.goaways.is_empty() && !matches!(self.outcome, Outcome::GoAway(_)) {
            let g: Vec<String> = self.goaways.iter().map(|g| g.to_string()).collect();
            let _ = write!(s, "; then {}", g.join(", "));
        }
        let _ = write!(
            s,
            "; connection {}",
            if self.usable {
                "usable".to_string()
            } else {
                format!("NOT usable ({})", self.usable_detail)
            }
        );
        s
    }

    fn effect_text(&self) -> String {
        match &self.effect {
            None => String::new(),
            Some(Ok(e)) => e.text.clone(),
            Some(Err(e)) => format!("effect check failed: {e}"),
        }
    }
}

/// The class compared between the frontend and the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    Status(i32),
    /// An HTTP answer without grpc-status.
    NoStatus(u16),
    Reset(u32),
    /// GOAWAY or EOF before the call ended.
    Connection,
    Timeout,
    SendFailed,
}

pub fn class(o: &Outcome) -> Class {
    match o {
        Outcome::Response(r) => match r.grpc_status {
            Some(c) => Class::Status(c),
            None => Class::NoStatus(r.http_status.unwrap_or(0)),
        },
        Outcome::Reset { code, .. } => Class::Reset(*code),
        Outcome::GoAway(_) | Outcome::Closed(_) => Class::Connection,
        Outcome::Timeout { .. } => Class::Timeout,
        Outcome::SendFailed(_) => Class::SendFailed,
    }
}

/// The grpc-status a gRPC client derives from RST_STREAM (gRPC's HTTP/2
/// protocol document, "Errors").
pub fn status_of_reset(code: u32) -> i32 {
    match code {
        error_code::CANCEL => code::CANCELLED,
        error_code::REFUSED_STREAM => code::UNAVAILABLE,
        error_code::ENHANCE_YOUR_CALM => code::RESOURCE_EXHAUSTED,
        error_code::INADEQUATE_SECURITY => code::PERMISSION_DENIED,
        _ => code::INTERNAL,
    }
}

/// A reset on one side and, on the other, the status a client makes of it.
fn equivalent(a: &Class, b: &Class) -> bool {
    match (a, b) {
        (Class::Reset(r), Class::Status(s)) | (Class::Status(s), Class::Reset(r)) => {
            *s == status_of_reset(*r)
        }
        _ => false,
    }
}

fn is_call_refusal(c: &Class) -> bool {
    matches!(c, Class::Status(s) if *s != code::OK)
        || matches!(c, Class::Reset(_) | Class::NoStatus(_))
}

/// The bystander: a PollWorkflowTaskQueue on `billing` through the proxy,
/// from the billing certificate, in flight during every row.
pub struct Bystander {
    conn: Option<H2Conn>,
    stream: u32,
    started: Instant,
    pub launches: usize,
}

impl Bystander {
    pub fn new() -> Bystander {
        Bystander {
            conn: None,
            stream: 0,
            started: Instant::now(),
            launches: 0,
        }
    }

    async fn launch(&mut self, env: &Env) -> Result<(), String> {
        if let Some(c) = &self.conn {
            let _ = c.rst_stream(self.stream, error_code::CANCEL);
        }
        let conn = match self.conn.take() {
            Some(c) if c.closed().is_none() && c.goaways().is_empty() => c,
            _ => {
                H2Conn::tls(
                    env.proxy.addr,
                    &env.tls(&env.billing),
                    &H2Options::default(),
                )
                .await?
            }
        };
        let path = enc::method("PollWorkflowTaskQueue");
        let mut headers = raw_h2::grpc_headers(conn.scheme, &conn.authority, &path);
        headers.push(raw_h2::field("grpc-timeout", "45S"));
        let msg = enc::poll(BILLING, "bystander");
        let steps = [
            Step::headers(headers),
            Step::data(grpc::frame(&msg, false).to_vec(), true),
        ];
        self.stream = conn.send_steps(&steps, Duration::from_secs(5)).await?;
        self.started = Instant::now();
        self.launches += 1;
        self.conn = Some(conn);
        // Let the poll reach the frontend.
        tokio::time::sleep(Duration::from_millis(300)).await;
        match self.check() {
            Ok(true) => Ok(()),
            Ok(false) => Err("the bystander poll ended at once".into()),
            Err(e) => Err(format!("the bystander poll failed at once: {e}")),
        }
    }

    /// Makes sure a fresh poll is in flight before a row.
    pub async fn ensure(&mut self, env: &Env) -> Result<(), String> {
        let fresh = self.started.elapsed() < Duration::from_secs(30);
        if self.conn.is_some() && fresh && self.check() == Ok(true) {
            return Ok(());
        }
        self.launch(env).await
    }

    /// `Ok(true)`: still in flight; `Ok(false)`: ended normally (OK);
    /// `Err`: it was failed.
    pub fn check(&self) -> Result<bool, String> {
        let Some(conn) = &self.conn else {
            return Ok(false);
        };
        let ev = conn.stream(self.stream).unwrap_or_default();
        if ev.end_stream {
            let o = Outcome::Response(raw_h2::Response::from_events(&ev));
            return if o.is_ok() {
                Ok(false)
            } else {
                Err(o.to_string())
            };
        }
        if let Some(code) = ev.reset {
            return Err(format!("RST_STREAM {}", error_code::name(code)));
        }
        if let Some(why) = conn.closed() {
            return Err(format!("its connection ended: {why}"));
        }
        if let Some(g) = conn.goaways().last() {
            if g.error_code != error_code::NO_ERROR {
                return Err(format!("its connection got {g}"));
            }
        }
        Ok(true)
    }
}

/// One row's results.
pub struct RowResult {
    pub row: Row,
    pub direct: Obs,
    pub payments: Obs,
    pub admin: Obs,
    pub bystander: Option<String>,
    pub verdict_payments: String,
    pub verdict_admin: String,
    pub problems: Vec<String>,
}

async fn run_variant(env: &Env, row: &Row, v: Variant) -> Obs {
    let started = Instant::now();
    let tag = format!("{}-{}", row.name.replace('_', "-"), v.letter());
    let prep = match env.prepare(row.prep, &tag).await {
        Ok(p) => p,
        Err(e) => return Obs::failed(format!("preparing the row failed: {e}")),
    };
    let conn = match env.connect(v).await {
        Ok(c) => c,
        Err(e) => return Obs::failed(format!("connect: {e}")),
    };
    let ctx = Ctx {
        scheme: conn.scheme,
        authority: conn.authority.clone(),
        tag,
        prep,
    };
    let warmup = match &row.warmup {
        Some(w) => Some(conn.run(&w(&ctx), row.timeout).await.1),
        None => None,
    };
    let steps = (row.build)(&ctx);
    let (_, outcome) = conn.run(&steps, row.timeout).await;
    let check = conn
        .unary_timeout(
            &enc::method("GetSystemInfo"),
            &[],
            &grpc::frame(&pb::get_system_info(), false),
            Duration::from_secs(5),
        )
        .await;
    Obs {
        outcome,
        usable: check.is_ok(),
        usable_detail: if check.is_ok() {
            String::new()
        } else {
            check.to_string()
        },
        goaways: conn.goaways(),
        warmup,
        ctx: Some(ctx),
        effect: None,
        frames: conn.frame_log(),
        elapsed: started.elapsed(),
    }
}

/// Compares one proxy variant with the frontend; returns (verdict, problems).
fn judge(row: &Row, d: &Obs, x: &Obs, v: Variant) -> (String, Vec<String>) {
    let mut problems = Vec::new();
    let dc = class(&d.outcome);
    let xc = class(&x.outcome);
    let policy_ok = |c: &Class| match c {
        Class::Status(s) => {
            row.stricter.contains(s)
                || (*s == code::PERMISSION_DENIED && v == Variant::Payments && row.not_granted)
        }
        _ => false,
    };
    let verdict = if dc == xc {
        "same"
    } else if equivalent(&dc, &xc) {
        "equivalent"
    } else if policy_ok(&xc) {
        "stricter"
    } else {
        match row.tolerance {
            Tolerance::Refusal | Tolerance::Lenient if is_call_refusal(&xc) => "refused-the-call",
            Tolerance::Lenient
                if !matches!(xc, Class::Connection | Class::Timeout | Class::SendFailed) =>
            {
                "normalised"
            }
            _ => "DIFFERENT",
        }
    };
    if verdict == "DIFFERENT" {
        problems.push(format!(
            "{}: outcome differs: direct {} / proxy {}",
            v.label(),
            d.outcome,
            x.outcome
        ));
    }
    if let Some(m) = x.outcome.grpc_message() {
        if m.contains("may not call :") {
            problems.push(format!("{}: the refusal names no method: {m:?}", v.label()));
        }
    }
    if verdict == "same" && row.check_message {
        if let (Class::Status(s), Some(dm)) = (&dc, d.outcome.grpc_message()) {
            let xm = x.outcome.grpc_message().unwrap_or_default();
            // protobuf-go writes "proto:" and its text apart by a space or
            // a U+00A0, chosen per binary (internal/detrand): either counts.
            let (dn, xn) = (dm.replace('\u{a0}', " "), xm.replace('\u{a0}', " "));
            if *s != code::OK && !xn.starts_with(&dn) {
                problems.push(format!(
                    "{}: grpc-message does not start with the frontend's: direct {dm:?} / proxy {xm:?}",
                    v.label()
                ));
            }
        }
    }
    if let (Some(Ok(de)), Some(Ok(xe))) = (&d.effect, &x.effect) {
        if matches!(verdict, "same" | "equivalent")
            && (de.payments, de.billing) != (xe.payments, xe.billing)
        {
            problems.push(format!(
                "{}: same status but a different effect: direct {} / proxy {}",
                v.label(),
                de.text,
                xe.text
            ));
        }
    }
    if let Some(Ok(xe)) = &x.effect {
        if v == Variant::Payments && xe.billing {
            problems.push(format!(
                "ISOLATION BREACH: the payments-only certificate acted on billing: {}",
                xe.text
            ));
        }
    }
    if let Some(Err(e)) = &x.effect {
        problems.push(format!("{}: {e}", v.label()));
    }
    if d.usable && !x.usable {
        problems.push(format!(
            "{}: the client connection is not usable after the shape ({}), the frontend's is",
            v.label(),
            x.usable_detail
        ));
    }
    (verdict.to_string(), problems)
}

/// Runs `rows` (in order, each row's three variants at once) and returns
/// the report text and the number of rows with problems.
pub async fn run_rows(env: &Env, rows: Vec<Row>) -> (String, usize) {
    let started = Instant::now();
    let mut bystander = Bystander::new();
    let mut results = Vec::new();
    for row in rows {
        let mut pre = None;
        if let Err(e) = bystander.ensure(env).await {
            pre = Some(format!(
                "could not start the bystander poll before the row: {e}"
            ));
        }
        let (direct, payments, admin) = tokio::join!(
            run_variant(env, &row, Variant::Direct),
            run_variant(env, &row, Variant::Payments),
            run_variant(env, &row, Variant::Admin),
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        let by = match (pre, bystander.check()) {
            (Some(e), _) => Some(e),
            (None, Err(e)) => Some(format!("the bystander long poll (billing) was failed: {e}")),
            (None, Ok(_)) => None,
        };
        results.push(RowResult {
            row,
            direct,
            payments,
            admin,
            bystander: by,
            verdict_payments: String::new(),
            verdict_admin: String::new(),
            problems: Vec::new(),
        });
    }
    // Effects: asynchronous ones (child starts, external signals) need a
    // moment on the server.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for r in &mut results {
        if r.row.effect == Effect::None {
            continue;
        }
        let effect = r.row.effect;
        for obs in [&mut r.direct, &mut r.payments, &mut r.admin] {
            if let Some(ctx) = obs.ctx.clone() {
                obs.effect = Some(env.observe(effect, &ctx, &obs.outcome).await);
            }
        }
    }
    let mut failed = 0;
    let mut report = String::new();
    let mut summary = String::new();
    let _ = writeln!(
        report,
        "==== conformance [{}]: {} rows in {:.1}s (bystander polls started: {}) ====",
        env.label,
        results.len(),
        started.elapsed().as_secs_f64(),
        bystander.launches
    );
    for r in &mut results {
        let (vp, mut pp) = judge(&r.row, &r.direct, &r.payments, Variant::Payments);
        let (va, pa) = judge(&r.row, &r.direct, &r.admin, Variant::Admin);
        r.verdict_payments = vp;
        r.verdict_admin = va;
        pp.extend(pa);
        if let Some(b) = &r.bystander {
            pp.push(b.clone());
        }
        if let Outcome::SendFailed(e) = &r.direct.outcome {
            pp.push(format!("direct: {e}"));
        }
        r.problems = pp;
        let failing = !r.problems.is_empty() && !r.row.info;
        if failing {
            failed += 1;
        }
        let _ = writeln!(report, "\n[{}] {}", r.row.group, r.row.name);
        if !r.row.note.is_empty() {
            let _ = writeln!(report, "  note: {}", r.row.note);
        }
        for (v, o, verdict) in [
            (Variant::Direct, &r.direct, ""),
            (Variant::Payments, &r.payments, r.verdict_payments.as_str()),
            (Variant::Admin, &r.admin, r.verdict_admin.as_str()),
        ] {
            let _ = write!(
                report,
                "  {:<20} [{:>5} ms] {}",
                v.label(),
                o.elapsed.as_millis(),
                o.summary()
            );
            let e = o.effect_text();
            if !e.is_empty() {
                let _ = write!(report, "; effect: {e}");
            }
            if !verdict.is_empty() {
                let _ = write!(report, "  => {verdict}");
            }
            let _ = writeln!(report);
            if let Some(w) = &o.warmup {
                let _ = writeln!(report, "  {:<20} (warm-up call: {w})", "");
            }
        }
        let _ = writeln!(
            report,
            "  {:<20} {}",
            "bystander",
            r.bystander.as_deref().unwrap_or("still in flight")
        );
        for p in &r.problems {
            let mark = if r.row.info { "(accepted)" } else { "!!" };
            let _ = writeln!(report, "  {mark} {p}");
        }
        if !r.problems.is_empty() && std::env::var_os("CONFORMANCE_FRAMES").is_some() {
            for (v, o) in [("direct", &r.direct), ("payments", &r.payments)] {
                let _ = writeln!(report, "  frames received ({v}):");
                for f in &o.frames {
                    let _ = writeln!(report, "      {f}");
                }
            }
        }
        let _ = writeln!(
            summary,
            "{:<4} {:<48} | {} | {} | {}",
            if failing {
                "FAIL"
            } else if r.problems.is_empty() {
                "ok"
            } else {
                "info"
            },
            r.row.name,
            r.direct.outcome,
            r.payments.outcome,
            r.verdict_payments
        );
    }
    let _ = writeln!(
        report,
        "\n==== summary [{}]: {failed} of {} rows with problems ====",
        env.label,
        results.len()
    );
    report.push_str(&summary);
    (report, failed)
}
