//! The per-call authorization work, measured: matching an identity against
//! the rules (once per connection), reading the namespace out of a 1 KiB
//! request, and deciding. `cargo bench --bench authz`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use temporal_mtls_proxy::internals::last_string_field;
use temporal_mtls_proxy::internals::lookup;
use temporal_mtls_proxy::internals::parse_prefix;
use temporal_mtls_proxy::internals::PeerIdentity;
use temporal_mtls_proxy::internals::{Field, Mode, Policy, Role, Rule};
use temporal_mtls_proxy::internals::{FieldKind, Pattern};

fn pattern(text: &str, kind: FieldKind) -> Pattern {
    Pattern::parse(text, kind).expect("valid pattern")
}

/// 20 rules, the matching ones last, as in a policy with many teams.
fn policy() -> Policy {
    let mut rules = Vec::new();
    for i in 0..18 {
        rules.push(Arc::new(Rule {
            name: Arc::from(format!("team-{i}")),
            matchers: vec![(Field::Ou, pattern(&format!("team-{i}"), FieldKind::Text))],
            namespaces: vec![pattern(&format!("team-{i}-*"), FieldKind::Namespace)],
            roles: vec![Role::Writer],
            methods: vec![],
            token: None,
        }));
    }
    rules.push(Arc::new(Rule {
        name: Arc::from("payments-workers"),
        matchers: vec![
            (Field::Ou, pattern("payments", FieldKind::Text)),
            (
                Field::Uri,
                pattern("spiffe://example.org/ns/payments/*", FieldKind::Uri),
            ),
        ],
        namespaces: vec![pattern("payments", FieldKind::Namespace)],
        roles: vec![Role::Worker, Role::Writer],
        methods: vec![],
        token: None,
    }));
    rules.push(Arc::new(Rule {
        name: Arc::from("payments-readers"),
        matchers: vec![(Field::O, pattern("example", FieldKind::Text))],
        namespaces: vec![pattern("payments-*", FieldKind::Namespace)],
        roles: vec![Role::Reader],
        methods: vec![],
        token: None,
    }));
    Policy {
        mode: Mode::Enforce,
        rules,
    }
}

fn identity() -> PeerIdentity {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["worker.payments.example.org".to_owned()])
        .expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "payments-worker");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, "payments");
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://example.org/ns/payments/sa/worker"
            .try_into()
            .expect("uri"),
    ));
    let cert = params.self_signed(&key).expect("cert");
    PeerIdentity::from_der(cert.der()).expect("identity")
}

/// A 1 KiB StartWorkflowExecution-like request: namespace (field 1) first,
/// then workflow id, type, task queue and an input payload.
fn request_1k() -> Vec<u8> {
    fn field(num: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(num << 3 | 2);
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
    }
    let mut msg = Vec::new();
    field(1, b"payments", &mut msg);
    field(2, b"order-4711-checkout", &mut msg);
    field(3, b"\x0a\x0fCheckoutWorkflow", &mut msg);
    field(4, b"\x0a\x0fpayments-orders", &mut msg);
    let payload = vec![b'x'; 1024 - msg.len() - 8];
    field(5, &payload, &mut msg);
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    framed
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let id = identity();
    let request = request_1k();
    let path = "/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution";

    c.bench_function("identity match (20 rules, once per connection)", |b| {
        b.iter(|| black_box(policy.grants_for(black_box(Some(&id)), None)))
    });

    let grants = policy.grants_for(Some(&id), None);
    c.bench_function("namespace extraction + decision (1 KiB request)", |b| {
        b.iter(|| {
            let framed = black_box(&request[..]);
            let prefix = parse_prefix([framed[0], framed[1], framed[2], framed[3], framed[4]])
                .expect("prefix");
            let message = &framed[5..5 + prefix.len as usize];
            let method = lookup(black_box(path)).expect("known method");
            let field = method.namespace_field.expect("namespace field");
            let namespace = last_string_field(message, field).expect("well-formed");
            black_box(grants.decide(method, path, namespace))
        })
    });

    c.bench_function("method lookup", |b| {
        b.iter(|| black_box(lookup(black_box(path))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
