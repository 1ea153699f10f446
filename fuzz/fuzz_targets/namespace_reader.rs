//! The protobuf reader that finds namespaces (`temporal::wire`,
//! `temporal::nested`), against a reference built on prost's wire decoder
//! (`temporal_mtls_proxy_fuzz::pb`), which reads fields as protobuf-go (the
//! frontend) does: a field of the wanted number with another wire type is
//! an unknown field, the last occurrence of a string wins, every occurrence
//! must be UTF-8.
//!
//! - `last_string_field` finds a namespace exactly where the reference does
//!   (the same one), and fails exactly where the reference fails, but for
//!   the proxy's one deliberate extra refusal: groups nested deeper than 64.
//! - `nested_namespaces` finds, for RespondWorkflowTaskCompleted and
//!   ExecuteMultiOperation, exactly the non-empty namespaces of every
//!   command / operation occurrence the reference finds, in order, and none
//!   for other methods.
//! - `token_namespace_id` finds the namespace id the reference reads from
//!   the last task token.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use temporal_mtls_proxy::internals::{
    last_string_field, lookup, nested_namespaces, token_namespace_id, METHODS,
};
use temporal_mtls_proxy_fuzz::pb::{self, encode, group_depth, Field, RefError};

#[derive(Debug, Arbitrary)]
enum Message {
    Raw(Vec<u8>),
    Fields(Vec<Field>),
    /// A RespondWorkflowTaskCompleted / ExecuteMultiOperation shape: items
    /// of field 2, each holding attributes under one of the numbers the
    /// proxy reads, with namespaces and noise around.
    Nested(Vec<Item>, Vec<Field>),
}

#[derive(Debug, Arbitrary)]
struct Item {
    before: Vec<Field>,
    attributes: Vec<(u8, Vec<Field>, Option<String>)>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    field: pb::Number,
    method: u16,
    token_field: bool,
    message: Message,
}

fn build(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    match message {
        Message::Raw(b) => out.extend_from_slice(b),
        Message::Fields(f) => encode(f, &mut out),
        Message::Nested(items, rest) => {
            for item in items {
                let mut body = Vec::new();
                encode(&item.before, &mut body);
                for (number, fields, namespace) in &item.attributes {
                    let number = [1, 2, 3, 9, 12, 13][usize::from(*number) % 6];
                    let mut attrs = Vec::new();
                    if let Some(ns) = namespace {
                        pb::len_field(1, ns.as_bytes(), &mut attrs);
                    }
                    encode(fields, &mut attrs);
                    pb::len_field(number, &attrs, &mut body);
                }
                pb::len_field(2, &body, &mut out);
            }
            encode(rest, &mut out);
        }
    }
    out
}

/// The namespaces the reference finds in items of field 2 under `numbers`.
fn reference_nested<'a>(msg: &'a [u8], numbers: &[u32]) -> Result<Vec<&'a str>, RefError> {
    let mut out = Vec::new();
    for item in pb::len_values(msg, 2)? {
        for &n in numbers {
            for attrs in pb::len_values(item, n)? {
                match pb::last_string(attrs, 1)? {
                    Some(ns) if !ns.is_empty() => out.push(ns),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

fuzz_target!(|input: Input| {
    let msg = build(&input.message);
    let deep = group_depth(&msg) > 64;

    // The top-level string field.
    let field = input.field.get();
    let got = last_string_field(&msg, field);
    let want = pb::last_string(&msg, field);
    match (&got, &want) {
        (Ok(g), Ok(w)) => assert_eq!(
            g, w,
            "field {field}: proxy and reference read different values"
        ),
        (Err(_), Err(_)) => {}
        (Err(_), Ok(_)) if deep => {}
        (g, w) => panic!("field {field}: proxy {g:?}, reference {w:?}"),
    }

    // Nested namespaces, by method.
    let method = &METHODS[usize::from(input.method) % METHODS.len()];
    let numbers: &[u32] = match method.name {
        "RespondWorkflowTaskCompleted" if method.path().contains("WorkflowService") => &[9, 12, 13],
        "ExecuteMultiOperation" => &[1, 2],
        _ => &[],
    };
    let mut found = Vec::new();
    let got = nested_namespaces(method, &msg, &mut found);
    if numbers.is_empty() {
        assert!(
            got.is_ok() && found.is_empty(),
            "{}: nested namespaces {found:?}",
            method.name
        );
    } else {
        let want = reference_nested(&msg, numbers);
        match (&got, &want) {
            (Ok(()), Ok(w)) => {
                let g: Vec<&str> = found.iter().map(|n| n.namespace).collect();
                assert_eq!(&g, w, "{}: nested namespaces", method.name);
                for n in &found {
                    assert!(
                        lookup(n.acts_as).is_some(),
                        "{} acts as an unknown method",
                        n.via
                    );
                }
            }
            (Err(_), Err(_)) => {}
            (Err(_), Ok(_)) if deep => {}
            (g, w) => panic!("{}: proxy {g:?} ({found:?}), reference {w:?}", method.name),
        }
    }

    // Task tokens.
    let token_field = if input.token_field { 1 } else { 3 };
    let got = token_namespace_id(&msg, token_field);
    let want = pb::last_bytes(&msg, token_field).map(|t| t.map(|t| pb::last_string(t, 1)));
    match (got, want) {
        (Ok(id), Ok(Some(Ok(Some(w))))) => assert_eq!(id, w, "token namespace id"),
        (Ok(id), w) => panic!("token namespace id {id:?} found, reference {w:?}"),
        (Err(_), Ok(Some(Ok(Some(w))))) if !w.is_empty() && !deep => {
            panic!("token namespace id {w:?} missed")
        }
        (Err(_), _) => {}
    }
});
