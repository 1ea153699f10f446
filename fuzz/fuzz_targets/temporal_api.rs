//! The differential target: the namespace the proxy reads from a request
//! (`last_string_field` at the method table's `namespace_field`, and
//! `nested_namespaces`) against full protobuf decoders of the real Temporal
//! API request types (the protos the official Python SDK ships, compiled
//! by build.rs), for every method in the table.
//!
//! At start, for every row of `METHODS`: the RPC exists in the service
//! descriptors, and `namespace_field` is the number of the request's
//! top-level `string namespace` (None when it has none).
//!
//! Each input picks a method, builds a request of its real type from the
//! fuzzer's bytes (every field kind, nested messages, lists, maps, oneofs),
//! encodes it, and may change it on the wire (more namespace fields, with
//! any bytes or wire type, raw bytes, a second message merged in, a cut).
//! Then:
//!
//! - wherever a decoder with the frontend's rules (protobuf-go: a known
//!   field with another wire type is unknown, strings must be UTF-8, every
//!   nested message must decode) reads the request, the proxy reads it too,
//!   with the same namespace (absent and empty alike): the proxy never
//!   authorizes one namespace while the frontend acts on another;
//! - where prost-reflect and the frontend-rules decoder both decode the
//!   request, they read the same namespace;
//! - every non-empty namespace a decoded RespondWorkflowTaskCompleted
//!   command or ExecuteMultiOperation operation carries is among those the
//!   proxy authorizes, each as the call it stands for.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use prost::bytes::Buf;
use prost::encoding::{decode_key, decode_varint, WireType};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};
use temporal_mtls_proxy::internals::{last_string_field, nested_namespaces, Method, METHODS};
use temporal_mtls_proxy_fuzz::pb;

struct Api {
    /// Per row of METHODS: the request type (None: not in the API the SDK ships).
    requests: Vec<Option<MessageDescriptor>>,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        let pool = DescriptorPool::decode(
            &include_bytes!(concat!(env!("OUT_DIR"), "/temporal_api.bin"))[..],
        )
        .expect("descriptor set");
        let mut requests = Vec::new();
        let mut problems = Vec::new();
        let mut missing = Vec::new();
        for m in METHODS {
            let path = m.path();
            let (service, name) = path[1..].split_once('/').unwrap();
            let Some(rpc) = pool
                .get_service_by_name(service)
                .and_then(|s| s.methods().find(|r| r.name() == name))
            else {
                // Newer than the API the SDK ships: its
                // requests are not generated.
                missing.push(path);
                requests.push(None);
                continue;
            };
            let input = rpc.input();
            let ns = input
                .get_field_by_name("namespace")
                .filter(|f| f.kind() == Kind::String && !f.is_list())
                .map(|f| f.number());
            if ns != m.namespace_field {
                problems.push(format!(
                    "{path}: namespace_field {:?}, the API says {ns:?}",
                    m.namespace_field
                ));
            }
            requests.push(Some(input));
        }
        // The field numbers nested_namespaces reads.
        let check = |msg: &str, field: &str, number: u32, problems: &mut Vec<String>| {
            let f = pool
                .get_message_by_name(msg)
                .and_then(|m| m.get_field_by_name(field))
                .map(|f| f.number());
            if f != Some(number) {
                problems.push(format!("{msg}.{field} is {f:?}, the proxy reads {number}"));
            }
        };
        let cmd = "temporal.api.command.v1.Command";
        check(
            "temporal.api.workflowservice.v1.RespondWorkflowTaskCompletedRequest",
            "commands",
            2,
            &mut problems,
        );
        check(
            cmd,
            "request_cancel_external_workflow_execution_command_attributes",
            9,
            &mut problems,
        );
        check(
            cmd,
            "start_child_workflow_execution_command_attributes",
            12,
            &mut problems,
        );
        check(
            cmd,
            "signal_external_workflow_execution_command_attributes",
            13,
            &mut problems,
        );
        check(
            "temporal.api.workflowservice.v1.ExecuteMultiOperationRequest",
            "operations",
            2,
            &mut problems,
        );
        let op = "temporal.api.workflowservice.v1.ExecuteMultiOperationRequest.Operation";
        check(op, "start_workflow", 1, &mut problems);
        check(op, "update_workflow", 2, &mut problems);
        assert!(
            problems.is_empty(),
            "the method table disagrees with the API:\n{}",
            problems.join("\n")
        );
        if !missing.is_empty() {
            eprintln!(
                "temporal_api: not in the API the SDK ships, skipped: {}",
                missing.join(", ")
            );
        }
        Api { requests }
    })
}

// ---- generating requests of the real types -------------------------------

const NAMESPACES: [&str; 5] = ["default", "payments", "", "billing", "ops"];

fn text(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(1, 2)? {
        Ok(NAMESPACES[u.choose_index(NAMESPACES.len())?].to_owned())
    } else {
        u.arbitrary()
    }
}

fn single(kind: &Kind, u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    Ok(match kind {
        Kind::Double => Value::F64(u.arbitrary()?),
        Kind::Float => Value::F32(u.arbitrary()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(u.arbitrary()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(u.arbitrary()?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(u.arbitrary()?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(u.arbitrary()?),
        Kind::Bool => Value::Bool(u.arbitrary()?),
        Kind::String => Value::String(text(u)?),
        Kind::Bytes => Value::Bytes(prost::bytes::Bytes::from(u.arbitrary::<Vec<u8>>()?)),
        Kind::Enum(e) => {
            let values: Vec<i32> = e.values().map(|v| v.number()).collect();
            if !values.is_empty() && u.ratio(3, 4)? {
                Value::EnumNumber(values[u.choose_index(values.len())?])
            } else {
                Value::EnumNumber(u.arbitrary()?)
            }
        }
        Kind::Message(m) => Value::Message(message(m, u, depth + 1)?),
    })
}

fn map_key(kind: &Kind, u: &mut Unstructured<'_>) -> Result<MapKey> {
    Ok(match kind {
        Kind::Bool => MapKey::Bool(u.arbitrary()?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(u.arbitrary()?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(u.arbitrary()?),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(u.arbitrary()?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(u.arbitrary()?),
        _ => MapKey::String(text(u)?),
    })
}

fn value(field: &FieldDescriptor, u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            unreachable!()
        };
        let (k, v) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let mut map = HashMap::new();
        for _ in 0..u.int_in_range(0..=2)? {
            map.insert(map_key(&k.kind(), u)?, single(&v.kind(), u, depth)?);
        }
        Ok(Value::Map(map))
    } else if field.is_list() {
        let n = u.int_in_range(0..=3)?;
        Ok(Value::List(
            (0..n)
                .map(|_| single(&field.kind(), u, depth))
                .collect::<Result<_>>()?,
        ))
    } else {
        single(&field.kind(), u, depth)
    }
}

fn message(
    desc: &MessageDescriptor,
    u: &mut Unstructured<'_>,
    depth: u32,
) -> Result<DynamicMessage> {
    let mut msg = DynamicMessage::new(desc.clone());
    if depth > 4 || u.is_empty() {
        return Ok(msg);
    }
    for field in desc.fields() {
        // The namespace and the fields nested namespaces live in, often.
        let likely = matches!(
            field.name(),
            "namespace"
                | "commands"
                | "operations"
                | "start_workflow"
                | "update_workflow"
                | "request"
                | "start_child_workflow_execution_command_attributes"
                | "signal_external_workflow_execution_command_attributes"
                | "request_cancel_external_workflow_execution_command_attributes"
        );
        if u.ratio(if likely { 3 } else { 1 }, 4)? {
            let v = value(&field, u, depth)?;
            msg.set_field(&field, v);
        }
    }
    Ok(msg)
}

/// Changes on the wire, after encoding.
fn tamper(
    bytes: &mut Vec<u8>,
    desc: &MessageDescriptor,
    field: Option<u32>,
    u: &mut Unstructured<'_>,
) -> Result<()> {
    for _ in 0..u.int_in_range(0..=3)? {
        match u.int_in_range(0..=6)? {
            0 => {
                if let Some(f) = field {
                    let ns: Vec<u8> = if u.ratio(1, 2)? {
                        text(u)?.into_bytes()
                    } else {
                        u.arbitrary()?
                    };
                    pb::len_field(f, &ns, bytes);
                }
            }
            1 => {
                if let Some(f) = field {
                    // The namespace's number with another wire type.
                    let wt = [0u8, 1, 5][u.choose_index(3)?];
                    pb::tag(f, wt, bytes);
                    match wt {
                        0 => pb::varint(u.arbitrary()?, bytes),
                        1 => bytes.extend_from_slice(&u.arbitrary::<[u8; 8]>()?),
                        _ => bytes.extend_from_slice(&u.arbitrary::<[u8; 4]>()?),
                    }
                }
            }
            2 => bytes.extend_from_slice(&u.arbitrary::<Vec<u8>>()?),
            3 => {
                // A second message, merged (protobuf concatenation).
                let more = message(desc, u, 0)?;
                bytes.extend(prost::Message::encode_to_vec(&more));
            }
            4 => {
                let n = u.int_in_range(0..=bytes.len())?;
                bytes.truncate(n);
            }
            5 => {
                let fields: Vec<pb::Field> = u.arbitrary()?;
                pb::encode(&fields, bytes);
            }
            _ => {
                if !bytes.is_empty() {
                    let at = u.choose_index(bytes.len())?;
                    bytes[at] ^= u.arbitrary::<u8>()?;
                }
            }
        }
    }
    Ok(())
}

// ---- a decoder with the frontend's rules -----------------------------------

/// Decodes `msg` as `desc` the way protobuf-go does, validating every field
/// it knows (recursively) and skipping the rest; returns the last value of
/// the top-level string field `wanted`.
fn go_decode(
    desc: &MessageDescriptor,
    msg: &[u8],
    wanted: Option<u32>,
    depth: u32,
) -> std::result::Result<Option<String>, String> {
    if depth > 100 {
        return Err("too deep".into());
    }
    let mut buf = msg;
    let mut found = None;
    while buf.has_remaining() {
        let (number, wire_type) = decode_key(&mut buf).map_err(|e| e.to_string())?;
        if number > pb::MAX_FIELD {
            return Err("field number".into());
        }
        let field = desc.get_field(number);
        let expected = field.as_ref().map(|f| wire_type_of(&f.kind()));
        let packed_ok = field.as_ref().is_some_and(|f| {
            f.is_list() && wire_type == WireType::LengthDelimited && is_scalar(&f.kind())
        });
        match (field, expected) {
            (Some(f), Some(exp)) if exp == wire_type || packed_ok => {
                if wire_type == WireType::LengthDelimited {
                    let len = decode_varint(&mut buf).map_err(|e| e.to_string())?;
                    if len > buf.remaining() as u64 {
                        return Err("truncated".into());
                    }
                    let (value, rest) = buf.split_at(len as usize);
                    buf = rest;
                    match f.kind() {
                        Kind::String => {
                            let s = std::str::from_utf8(value).map_err(|_| "utf-8".to_string())?;
                            if Some(number) == wanted {
                                found = Some(s.to_owned());
                            }
                        }
                        Kind::Bytes => {}
                        Kind::Message(m) => {
                            go_decode(&m, value, None, depth + 1)?;
                        }
                        kind => packed(&kind, value)?,
                    }
                } else {
                    skip(wire_type, number, &mut buf, depth)?;
                }
            }
            _ => skip(wire_type, number, &mut buf, depth)?,
        }
    }
    Ok(found)
}

/// Whether a top-level map field of `desc` comes with a wire type other
/// than length-delimited somewhere in `msg`.
fn map_with_other_wire_type(desc: &MessageDescriptor, msg: &[u8]) -> bool {
    let mut buf = msg;
    while buf.has_remaining() {
        let Ok((number, wire_type)) = decode_key(&mut buf) else {
            return false;
        };
        let is_map = desc.get_field(number).is_some_and(|f| f.is_map());
        if is_map && wire_type != WireType::LengthDelimited {
            return true;
        }
        if skip(wire_type, number, &mut buf, 0).is_err() {
            return false;
        }
    }
    false
}

fn is_scalar(kind: &Kind) -> bool {
    !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_))
}

fn wire_type_of(kind: &Kind) -> WireType {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => WireType::SixtyFourBit,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => WireType::ThirtyTwoBit,
        Kind::String | Kind::Bytes | Kind::Message(_) => WireType::LengthDelimited,
        _ => WireType::Varint,
    }
}

fn packed(kind: &Kind, mut value: &[u8]) -> std::result::Result<(), String> {
    match wire_type_of(kind) {
        WireType::SixtyFourBit if value.len() % 8 == 0 => Ok(()),
        WireType::ThirtyTwoBit if value.len() % 4 == 0 => Ok(()),
        WireType::Varint => {
            while value.has_remaining() {
                decode_varint(&mut value).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        _ => Err("packed length".into()),
    }
}

fn skip(
    wire_type: WireType,
    number: u32,
    buf: &mut &[u8],
    depth: u32,
) -> std::result::Result<(), String> {
    match wire_type {
        WireType::Varint => decode_varint(buf).map(|_| ()).map_err(|e| e.to_string()),
        WireType::SixtyFourBit if buf.len() >= 8 => Ok(buf.advance(8)),
        WireType::ThirtyTwoBit if buf.len() >= 4 => Ok(buf.advance(4)),
        WireType::LengthDelimited => {
            let len = decode_varint(buf).map_err(|e| e.to_string())?;
            if len > buf.remaining() as u64 {
                return Err("truncated".into());
            }
            buf.advance(len as usize);
            Ok(())
        }
        WireType::StartGroup => {
            if depth > 100 {
                return Err("too deep".into());
            }
            loop {
                if !buf.has_remaining() {
                    return Err("unterminated group".into());
                }
                let (n, wt) = decode_key(buf).map_err(|e| e.to_string())?;
                if n > pb::MAX_FIELD {
                    return Err("field number".into());
                }
                if wt == WireType::EndGroup {
                    return if n == number {
                        Ok(())
                    } else {
                        Err("mismatched end group".into())
                    };
                }
                skip(wt, n, buf, depth + 1)?;
            }
        }
        WireType::EndGroup => Err("end group without start".into()),
        _ => Err("truncated".into()),
    }
}

// ---- the nested namespaces a decoded request carries -------------------

fn decoded_nested(method: &Method, msg: &DynamicMessage) -> Vec<(String, &'static str)> {
    let wf = "/temporal.api.workflowservice.v1.WorkflowService/";
    let (outer, inner): (&str, &[(&str, &str)]) = match method.name {
        "RespondWorkflowTaskCompleted" => (
            "commands",
            &[
                (
                    "request_cancel_external_workflow_execution_command_attributes",
                    "RequestCancelWorkflowExecution",
                ),
                (
                    "start_child_workflow_execution_command_attributes",
                    "StartWorkflowExecution",
                ),
                (
                    "signal_external_workflow_execution_command_attributes",
                    "SignalWorkflowExecution",
                ),
            ],
        ),
        "ExecuteMultiOperation" => (
            "operations",
            &[
                ("start_workflow", "StartWorkflowExecution"),
                ("update_workflow", "UpdateWorkflowExecution"),
            ],
        ),
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    let Some(items) = msg.get_field_by_name(outer) else {
        return out;
    };
    let Some(items) = items.as_list() else {
        return out;
    };
    for item in items {
        let Some(item) = item.as_message() else {
            continue;
        };
        for (name, acts_as) in inner {
            if !item.has_field_by_name(name) {
                continue;
            }
            let attrs = item.get_field_by_name(name).unwrap();
            let ns = attrs
                .as_message()
                .and_then(|a| a.get_field_by_name("namespace"))
                .and_then(|v| v.as_str().map(str::to_owned));
            if let Some(ns) = ns.filter(|n| !n.is_empty()) {
                let path: &'static str = Box::leak(format!("{wf}{acts_as}").into_boxed_str());
                out.push((ns, path));
            }
        }
    }
    out
}

fn run(data: &[u8]) -> Result<()> {
    let api = api();
    let mut u = Unstructured::new(data);
    let index = u.choose_index(METHODS.len())?;
    let method = &METHODS[index];
    let Some(desc) = &api.requests[index] else {
        return Ok(());
    };
    let request = message(desc, &mut u, 0)?;
    let mut bytes = prost::Message::encode_to_vec(&request);
    tamper(&mut bytes, desc, method.namespace_field, &mut u)?;

    let Some(field) = method.namespace_field else {
        // No namespace in the request: nothing for the proxy to read.
        assert!(
            desc.get_field_by_name("namespace").is_none()
                || desc.get_field_by_name("namespace").unwrap().kind() != Kind::String
        );
        return Ok(());
    };
    if std::env::var_os("FUZZ_DEBUG").is_some() {
        eprintln!("{}: {bytes:?}", method.name);
    }
    let proxy = last_string_field(&bytes, field);
    let frontend = go_decode(desc, &bytes, Some(field), 0);
    let strict = DynamicMessage::decode(desc.clone(), &bytes[..]);

    // prost-reflect is lenient in places protobuf-go is not (it takes a
    // stray END_GROUP tag of a known field as the message's end), so the two
    // are compared where both decode; and it reads a map field sent with
    // another wire type as length-delimited anyway (a varint taken as a
    // length swallows the fields after it), where protobuf-go skips it as
    // unknown, so such requests are not compared either.
    let strict = match (&strict, &frontend) {
        (Ok(_), Ok(_)) if map_with_other_wire_type(desc, &bytes) => None,
        (Ok(msg), Ok(f)) => {
            let ns = msg
                .get_field_by_name("namespace")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            assert_eq!(
                f.clone().unwrap_or_default(),
                ns,
                "prost-reflect and the frontend-rules decoder disagree"
            );
            Some(msg)
        }
        _ => None,
    };
    if let Ok(ns) = &frontend {
        let deep = pb::group_depth(&bytes) > 64;
        match &proxy {
            Ok(p) => assert_eq!(
                p.unwrap_or_default(),
                ns.as_deref().unwrap_or_default(),
                "{}: the proxy reads another namespace than the frontend",
                method.name
            ),
            Err(_) if deep => {}
            Err(e) => panic!(
                "{}: the frontend reads namespace {ns:?}, the proxy fails: {e}",
                method.name
            ),
        }
    }
    if let Some(msg) = strict {
        let want = decoded_nested(method, msg);
        if !want.is_empty() {
            let mut found = Vec::new();
            nested_namespaces(method, &bytes, &mut found).expect("a request that decodes is read");
            for (ns, acts_as) in want {
                assert!(
                    found
                        .iter()
                        .any(|n| n.namespace == ns && n.acts_as == acts_as),
                    "{}: namespace {ns:?} ({acts_as}) is not authorized; the proxy found {found:?}",
                    method.name
                );
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
