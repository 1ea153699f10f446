//! The table of request shapes, each built byte by byte for the variant
//! it is sent on (its `:scheme`/`:authority`, and workflow ids and signal
//! names unique to the row and variant).

use std::time::Duration;

use crate::enc::{self, method};
use crate::harness::{Ctx, Effect, PrepKind, Row, BILLING, IDLE_QUEUE, PAYMENTS, SIGNAL_TARGET};
use crate::support::grpc::{self, code, pb};
use crate::support::raw_h2::{field, flags, frame_type, Field, Step};

const PD: i32 = code::PERMISSION_DENIED;
const IA: i32 = code::INVALID_ARGUMENT;
const MIB: usize = 1 << 20;

/// A message with the given flag byte and a correct length prefix.
fn framed_flag(flag: u8, msg: &[u8]) -> Vec<u8> {
    let mut v = vec![flag];
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

fn framed(msg: &[u8]) -> Vec<u8> {
    framed_flag(0, msg)
}

/// HEADERS (gRPC's, then `extra`), then `body` as DATA with END_STREAM.
fn call(ctx: &Ctx, m: &str, extra: &[(&str, &str)], body: Vec<u8>) -> Vec<Step> {
    let mut h = ctx.headers(&method(m));
    for (k, v) in extra {
        h.push(field(k, v));
    }
    vec![Step::headers(h), Step::data(body, true)]
}

/// A call with one uncompressed message.
fn msg(ctx: &Ctx, m: &str, message: &[u8]) -> Vec<Step> {
    call(ctx, m, &[], framed(message))
}

/// A call whose header list is edited first.
fn edited(ctx: &Ctx, path: &str, edit: impl FnOnce(&mut Vec<Field>), body: Vec<u8>) -> Vec<Step> {
    let mut h = ctx.headers(path);
    edit(&mut h);
    vec![Step::headers(h), Step::data(body, true)]
}

fn gsi_body() -> Vec<u8> {
    framed(&pb::get_system_info())
}

fn gsi_path() -> String {
    method("GetSystemInfo")
}

/// Replaces the value of the first field called `name`.
fn set(h: &mut [Field], name: &str, value: &[u8]) {
    for f in h.iter_mut() {
        if f.name() == Some(name.as_bytes()) {
            *f = Field::Literal(name.as_bytes().to_vec(), value.to_vec());
            return;
        }
    }
}

fn remove(h: &mut Vec<Field>, name: &str) {
    h.retain(|f| f.name() != Some(name.as_bytes()));
}

/// A field with the tag bytes given as is, then a length and `payload`.
fn raw_tagged(tag: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = tag.to_vec();
    v.extend(pb::varint(payload.len() as u64));
    v.extend_from_slice(payload);
    v
}

fn start_rest(ctx: &Ctx) -> Vec<u8> {
    enc::start_workflow_rest(&ctx.wf(), IDLE_QUEUE)
}

fn start(ctx: &Ctx, ns: &str) -> Vec<u8> {
    enc::start_workflow(ns, &ctx.wf(), IDLE_QUEUE)
}

fn ns_field(ns: &[u8]) -> Vec<u8> {
    pb::field_bytes(1, ns)
}

/// DescribeNamespaceRequest for `ns`, padded with unknown field 1000 to
/// exactly `size` bytes (size >= 2 MiB: the length varint is 4 bytes).
fn padded_describe(ns: &str, size: usize) -> Vec<u8> {
    let base = pb::describe_namespace(ns);
    let pad = size - base.len() - 2 - 4;
    let m = pb::concat(&[base, pb::field_bytes(1000, &vec![b'p'; pad])]);
    assert_eq!(m.len(), size);
    m
}

/// Starts a StartWorkflowExecution-type row that creates `ctx.wf()`.
fn start_row(
    group: &'static str,
    name: &str,
    body: impl Fn(&Ctx) -> Vec<u8> + Send + Sync + 'static,
) -> Row {
    Row::new(group, name, move |c| {
        msg(c, "StartWorkflowExecution", &body(c))
    })
    .effect(Effect::Workflow)
    .ns()
}

fn describe_row(
    group: &'static str,
    name: &str,
    body: impl Fn(&Ctx) -> Vec<u8> + Send + Sync + 'static,
) -> Row {
    Row::new(group, name, move |c| msg(c, "DescribeNamespace", &body(c)))
        .effect(Effect::Describe)
        .ns()
}

pub fn valid_rows() -> Vec<Row> {
    vec![
        Row::new("valid", "get_system_info", |c| {
            msg(c, "GetSystemInfo", &pb::get_system_info())
        }),
        Row::new("valid", "health_check", |c| {
            let m = pb::health_check("temporal.api.workflowservice.v1.WorkflowService");
            edited(c, "/grpc.health.v1.Health/Check", |_| {}, framed(&m))
        }),
        describe_row("valid", "describe_payments", |_| {
            pb::describe_namespace(PAYMENTS)
        }),
        describe_row("valid", "describe_billing", |_| {
            pb::describe_namespace(BILLING)
        })
        .not_granted(),
        start_row("valid", "start_payments", |c| start(c, PAYMENTS)),
        start_row("valid", "start_billing", |c| start(c, BILLING)).not_granted(),
        Row::new("valid", "signal_payments", |c| {
            msg(
                c,
                "SignalWorkflowExecution",
                &enc::signal_workflow(PAYMENTS, SIGNAL_TARGET, &c.sig()),
            )
        })
        .effect(Effect::Signal)
        .ns(),
        Row::new("valid", "signal_billing", |c| {
            msg(
                c,
                "SignalWorkflowExecution",
                &enc::signal_workflow(BILLING, SIGNAL_TARGET, &c.sig()),
            )
        })
        .effect(Effect::Signal)
        .not_granted(),
        Row::new("valid", "poll_payments_grpc_timeout_4s", |c| {
            call(
                c,
                "PollWorkflowTaskQueue",
                &[("grpc-timeout", "4S")],
                framed(&enc::poll(PAYMENTS, &c.queue())),
            )
        })
        .ns(),
        Row::new("valid", "poll_billing_grpc_timeout_4s", |c| {
            call(
                c,
                "PollWorkflowTaskQueue",
                &[("grpc-timeout", "4S")],
                framed(&enc::poll(BILLING, &c.queue())),
            )
        })
        .not_granted(),
    ]
}

pub fn protobuf_rows() -> Vec<Row> {
    let g = "protobuf";
    vec![
        start_row(g, "ns_repeated_payments_then_billing_start", |c| {
            pb::concat(&[ns_field(b"payments"), ns_field(b"billing"), start_rest(c)])
        })
        .not_granted(),
        start_row(g, "ns_repeated_billing_then_payments_start", |c| {
            pb::concat(&[ns_field(b"billing"), ns_field(b"payments"), start_rest(c)])
        }),
        describe_row(g, "ns_repeated_payments_then_billing_describe", |_| {
            pb::concat(&[ns_field(b"payments"), ns_field(b"billing")])
        })
        .not_granted(),
        describe_row(g, "ns_repeated_billing_then_payments_describe", |_| {
            pb::concat(&[ns_field(b"billing"), ns_field(b"payments")])
        }),
        start_row(g, "ns_payments_first_billing_after_other_fields", |c| {
            pb::concat(&[ns_field(b"payments"), start_rest(c), ns_field(b"billing")])
        })
        .not_granted(),
        // A known field with the wrong wire type is an unknown field to
        // protobuf-go: the string namespace before it stands.
        start_row(g, "ns_billing_then_field1_as_varint", |c| {
            pb::concat(&[ns_field(b"billing"), start_rest(c), pb::field_varint(1, 7)])
        })
        .not_granted(),
        start_row(g, "ns_payments_then_field1_as_varint", |c| {
            pb::concat(&[ns_field(b"payments"), pb::field_varint(1, 7), start_rest(c)])
        }),
        // A message field (5, input) sent as a varint whose value is the
        // length of the namespace field after it: protobuf-go skips the
        // varint as unknown and reads the namespace (a decoder taking the
        // varint as a length would swallow it; prost-reflect does, for map
        // fields: fuzz/corpus/temporal_api/regression-map-field-varint).
        start_row(g, "ns_billing_after_field5_as_varint_of_its_length", |c| {
            let billing = ns_field(b"billing");
            pb::concat(&[
                ns_field(b"payments"),
                start_rest(c),
                pb::field_varint(5, billing.len() as u64),
                billing,
            ])
        })
        .not_granted(),
        start_row(g, "ns_payments_then_field1_as_fixed32", |c| {
            pb::concat(&[
                ns_field(b"payments"),
                start_rest(c),
                vec![0x0d, b'b', b'i', b'l', b'l'],
            ])
        }),
        describe_row(g, "ns_only_as_fixed64", |_| {
            let mut v = vec![0x09];
            v.extend_from_slice(b"billing!");
            v
        })
        .not_granted()
        .stricter(&[IA]),
        // Field 1 as a group (wire types 3/4) is skipped as unknown by the
        // server; what is inside it is not a namespace.
        start_row(g, "ns_billing_then_group1_holding_payments", |c| {
            pb::concat(&[
                ns_field(b"billing"),
                start_rest(c),
                vec![0x0b],
                ns_field(b"payments"),
                vec![0x0c],
            ])
        })
        .not_granted(),
        start_row(g, "ns_payments_then_group1_holding_billing", |c| {
            pb::concat(&[
                ns_field(b"payments"),
                start_rest(c),
                vec![0x0b],
                ns_field(b"billing"),
                vec![0x0c],
            ])
        })
        .stricter(&[PD, IA]),
        // Non-minimal varints are valid protobuf.
        start_row(g, "ns_billing_with_overlong_tag_after_payments", |c| {
            pb::concat(&[
                ns_field(b"payments"),
                start_rest(c),
                raw_tagged(&[0x8a, 0x80, 0x00], b"billing"),
            ])
        })
        .not_granted(),
        start_row(g, "ns_billing_with_overlong_length_after_payments", |c| {
            let mut f = vec![0x0a, 0x87, 0x80, 0x00];
            f.extend_from_slice(b"billing");
            pb::concat(&[ns_field(b"payments"), start_rest(c), f])
        })
        .not_granted(),
        // Field numbers past 2^29-1, or past 32 bits (a parser that
        // truncates would read field 1), and field 0.
        start_row(g, "field_number_2pow29", |c| {
            let tag = pb::varint(((1u64 << 29) << 3) | 2);
            pb::concat(&[start(c, PAYMENTS), raw_tagged(&tag, b"x")])
        })
        .msg(),
        start_row(g, "field_number_overflowing_to_1_billing", |c| {
            let tag = pb::varint((((1u64 << 32) | 1) << 3) | 2);
            pb::concat(&[start(c, PAYMENTS), raw_tagged(&tag, b"billing")])
        })
        .not_granted()
        .msg(),
        start_row(g, "field_number_overflowing_to_1_payments", |c| {
            let tag = pb::varint((((1u64 << 32) | 1) << 3) | 2);
            pb::concat(&[start(c, BILLING), raw_tagged(&tag, b"payments")])
        })
        .not_granted()
        .msg(),
        start_row(g, "field_number_0", |c| {
            pb::concat(&[start(c, PAYMENTS), raw_tagged(&[0x02], b"x")])
        })
        .msg(),
        start_row(g, "truncated_varint_value", |c| {
            pb::concat(&[start(c, PAYMENTS), vec![0x58, 0x80]])
        })
        .msg(),
        describe_row(g, "truncated_length_delimited", |_| {
            vec![0x0a, 0x08, b'p', b'a', b'y']
        })
        .msg(),
        describe_row(g, "truncated_tag", |_| {
            pb::concat(&[ns_field(b"payments"), vec![0x80]])
        })
        .msg(),
        start_row(g, "unknown_fields_around_namespace", |c| {
            pb::concat(&[
                pb::field_bytes(999, b"junk"),
                pb::field_varint(1000, 5),
                start(c, PAYMENTS),
                vec![0xc9, 0xc0, 0x0c, 1, 2, 3, 4, 5, 6, 7, 8],
            ])
        }),
        describe_row(g, "ns_invalid_utf8", |_| ns_field(b"pay\xffments"))
            .not_granted()
            .msg(),
        start_row(g, "workflow_id_invalid_utf8", |c| {
            pb::concat(&[start(c, PAYMENTS), pb::field_bytes(2, b"wf-\xff-not-utf8")])
        })
        .msg(),
        start_row(g, "ns_case_Payments", |c| start(c, "Payments")).not_granted(),
        start_row(g, "ns_leading_space", |c| start(c, " payments")).not_granted(),
        start_row(g, "ns_trailing_nul", |c| start(c, "payments\u{0}")).not_granted(),
        describe_row(g, "ns_trailing_space_describe", |_| {
            pb::describe_namespace("payments ")
        })
        .not_granted(),
        start_row(g, "ns_missing", start_rest)
            .not_granted()
            .stricter(&[IA]),
    ]
}

pub fn framing_rows() -> Vec<Row> {
    let g = "grpc-framing";
    vec![
        Row::new(g, "two_messages_payments_then_billing", |c| {
            let body = [
                framed(&pb::describe_namespace(PAYMENTS)),
                framed(&pb::describe_namespace(BILLING)),
            ]
            .concat();
            call(c, "DescribeNamespace", &[], body)
        })
        .effect(Effect::Describe)
        .not_granted()
        .msg(),
        Row::new(g, "two_messages_billing_then_payments", |c| {
            let body = [
                framed(&pb::describe_namespace(BILLING)),
                framed(&pb::describe_namespace(PAYMENTS)),
            ]
            .concat();
            call(c, "DescribeNamespace", &[], body)
        })
        .effect(Effect::Describe)
        .not_granted()
        .msg(),
        Row::new(g, "two_messages_start_payments_then_billing", |c| {
            let body = [framed(&start(c, PAYMENTS)), framed(&start(c, BILLING))].concat();
            call(c, "StartWorkflowExecution", &[], body)
        })
        .effect(Effect::Workflow)
        .not_granted()
        .msg(),
        Row::new(g, "empty_body_empty_data_frame", |c| {
            call(c, "GetSystemInfo", &[], Vec::new())
        })
        .msg(),
        Row::new(g, "empty_body_headers_end_stream", |c| {
            vec![Step::Headers {
                fields: c.headers(&gsi_path()),
                end_stream: true,
                fragment: None,
            }]
        })
        .msg()
        .timeout(Duration::from_secs(3))
        .note("grpc-go never answers a request whose HEADERS carry END_STREAM (no DATA at all)"),
        Row::new(g, "empty_body_describe", |c| {
            call(c, "DescribeNamespace", &[], Vec::new())
        })
        .not_granted()
        .msg(),
        Row::new(g, "compressed_flag_without_encoding", |c| {
            call(
                c,
                "DescribeNamespace",
                &[],
                framed_flag(1, &pb::describe_namespace(PAYMENTS)),
            )
        })
        .msg(),
        Row::new(g, "compressed_flag_with_identity_encoding", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "identity")],
                framed_flag(1, &pb::describe_namespace(PAYMENTS)),
            )
        })
        .msg(),
        Row::new(g, "gzip_valid_payments", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, &grpc::gzip(&pb::describe_namespace(PAYMENTS))),
            )
        })
        .effect(Effect::Describe),
        Row::new(g, "gzip_valid_billing", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, &grpc::gzip(&pb::describe_namespace(BILLING))),
            )
        })
        .effect(Effect::Describe)
        .not_granted(),
        // Go's gzip reader reads concatenated members as one stream.
        Row::new(g, "gzip_two_members_second_names_billing_describe", |c| {
            let z = [
                grpc::gzip(&pb::describe_namespace(PAYMENTS)),
                grpc::gzip(&ns_field(b"billing")),
            ]
            .concat();
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, &z),
            )
        })
        .effect(Effect::Describe)
        .not_granted(),
        Row::new(g, "gzip_two_members_second_names_billing_start", |c| {
            let z = [
                grpc::gzip(&start(c, PAYMENTS)),
                grpc::gzip(&ns_field(b"billing")),
            ]
            .concat();
            call(
                c,
                "StartWorkflowExecution",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, &z),
            )
        })
        .effect(Effect::Workflow)
        .not_granted(),
        Row::new(g, "gzip_trailing_garbage", |c| {
            let z = [
                grpc::gzip(&pb::describe_namespace(PAYMENTS)),
                b"garbage".to_vec(),
            ]
            .concat();
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, &z),
            )
        })
        .effect(Effect::Describe)
        .msg(),
        Row::new(g, "gzip_flag_with_corrupt_data", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, b"not gzip at all"),
            )
        })
        .msg(),
        Row::new(g, "unknown_encoding_br", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "br")],
                framed_flag(1, &pb::describe_namespace(PAYMENTS)),
            )
        })
        .msg(),
        Row::new(g, "unknown_encoding_br_flag_0", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "br")],
                framed(&pb::describe_namespace(PAYMENTS)),
            )
        })
        .effect(Effect::Describe)
        .msg(),
        Row::new(g, "flag_value_2", |c| {
            call(
                c,
                "DescribeNamespace",
                &[],
                framed_flag(2, &pb::describe_namespace(PAYMENTS)),
            )
        })
        .msg(),
        Row::new(g, "flag_value_0x80", |c| {
            call(
                c,
                "DescribeNamespace",
                &[],
                framed_flag(0x80, &pb::describe_namespace(PAYMENTS)),
            )
        })
        .msg(),
        Row::new(g, "length_prefix_longer_than_body", |c| {
            let m = pb::describe_namespace(PAYMENTS);
            let mut body = vec![0, 0, 0, 0, 100];
            body.extend_from_slice(&m);
            call(c, "DescribeNamespace", &[], body)
        })
        .msg(),
        Row::new(g, "stray_bytes_after_message", |c| {
            let mut body = framed(&pb::describe_namespace(PAYMENTS));
            body.extend_from_slice(&[0, 0, 0]);
            call(c, "DescribeNamespace", &[], body)
        })
        .effect(Effect::Describe)
        .msg(),
        Row::new(g, "message_exactly_4mib", |c| {
            call(
                c,
                "DescribeNamespace",
                &[],
                framed(&padded_describe(PAYMENTS, 4 * MIB)),
            )
        })
        .effect(Effect::Describe)
        .timeout(Duration::from_secs(20)),
        Row::new(g, "message_4mib_plus_1", |c| {
            call(
                c,
                "DescribeNamespace",
                &[],
                framed(&padded_describe(PAYMENTS, 4 * MIB + 1)),
            )
        })
        .msg()
        .timeout(Duration::from_secs(20)),
        Row::new(g, "message_5mib_uncompressed", |c| {
            call(
                c,
                "DescribeNamespace",
                &[],
                framed(&padded_describe(PAYMENTS, 5 * MIB)),
            )
        })
        .msg()
        .timeout(Duration::from_secs(20)),
        Row::new(g, "gzip_bomb_5mib_after_decompression", |c| {
            let z = grpc::gzip(&padded_describe(PAYMENTS, 5 * MIB));
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, &z),
            )
        })
        .msg()
        .timeout(Duration::from_secs(20)),
        Row::new(g, "gzip_decompressing_to_exactly_4mib", |c| {
            let z = grpc::gzip(&padded_describe(PAYMENTS, 4 * MIB));
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip")],
                framed_flag(1, &z),
            )
        })
        .effect(Effect::Describe)
        .timeout(Duration::from_secs(20)),
        Row::new(g, "message_split_byte_by_byte", |c| {
            vec![
                Step::headers(c.headers(&method("DescribeNamespace"))),
                Step::Data {
                    bytes: framed(&pb::describe_namespace(PAYMENTS)),
                    end_stream: true,
                    chunk: 1,
                },
            ]
        })
        .effect(Effect::Describe),
    ]
}

pub fn header_rows() -> Vec<Row> {
    let g = "headers";
    let gz_payments = || framed_flag(1, &grpc::gzip(&pb::describe_namespace(PAYMENTS)));
    let gz_billing = || framed_flag(1, &grpc::gzip(&pb::describe_namespace(BILLING)));
    vec![
        Row::new(g, "dup_grpc_encoding_identity_then_gzip", move |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "identity"), ("grpc-encoding", "gzip")],
                gz_payments(),
            )
        })
        .effect(Effect::Describe)
        .msg(),
        Row::new(g, "dup_grpc_encoding_gzip_then_identity", move |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-encoding", "gzip"), ("grpc-encoding", "identity")],
                gz_payments(),
            )
        })
        .effect(Effect::Describe)
        .msg(),
        Row::new(
            g,
            "dup_grpc_encoding_identity_then_gzip_billing",
            move |c| {
                call(
                    c,
                    "DescribeNamespace",
                    &[("grpc-encoding", "identity"), ("grpc-encoding", "gzip")],
                    gz_billing(),
                )
            },
        )
        .effect(Effect::Describe)
        .not_granted(),
        Row::new(g, "dup_temporal_namespace_payments_then_billing", |c| {
            call(
                c,
                "DescribeNamespace",
                &[
                    ("temporal-namespace", "payments"),
                    ("temporal-namespace", "billing"),
                ],
                framed(&pb::describe_namespace(PAYMENTS)),
            )
        })
        .effect(Effect::Describe)
        .stricter(&[IA])
        .ns(),
        Row::new(g, "temporal_namespace_billing_body_payments", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("temporal-namespace", "billing")],
                framed(&pb::describe_namespace(PAYMENTS)),
            )
        })
        .effect(Effect::Describe)
        .stricter(&[IA])
        .ns(),
        Row::new(g, "dup_content_type", |c| {
            call(
                c,
                "GetSystemInfo",
                &[("content-type", "application/grpc")],
                gsi_body(),
            )
        }),
        Row::new(g, "dup_content_type_grpc_then_json", |c| {
            call(
                c,
                "GetSystemInfo",
                &[("content-type", "application/json")],
                gsi_body(),
            )
        })
        .msg(),
        Row::new(g, "content_type_json", |c| {
            edited(
                c,
                &gsi_path(),
                |h| set(h, "content-type", b"application/json"),
                gsi_body(),
            )
        })
        .msg(),
        Row::new(g, "content_type_grpc_proto", |c| {
            edited(
                c,
                &gsi_path(),
                |h| set(h, "content-type", b"application/grpc+proto"),
                gsi_body(),
            )
        }),
        Row::new(g, "content_type_missing", |c| {
            edited(c, &gsi_path(), |h| remove(h, "content-type"), gsi_body())
        })
        .msg(),
        Row::new(g, "te_missing", |c| {
            edited(c, &gsi_path(), |h| remove(h, "te"), gsi_body())
        }),
        Row::new(g, "te_gzip", |c| {
            edited(c, &gsi_path(), |h| set(h, "te", b"gzip"), gsi_body())
        })
        .refusal(),
        Row::new(g, "connection_keep_alive", |c| {
            call(
                c,
                "GetSystemInfo",
                &[("connection", "keep-alive")],
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "transfer_encoding_chunked", |c| {
            call(
                c,
                "GetSystemInfo",
                &[("transfer-encoding", "chunked")],
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "uppercase_header_name", |c| {
            call(c, "GetSystemInfo", &[("X-Upper", "1")], gsi_body())
        })
        .refusal(),
        Row::new(g, "header_value_control_0x01", |c| {
            edited(
                c,
                &gsi_path(),
                |h| h.push(field("x-ctl", b"a\x01b")),
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "header_value_nul", |c| {
            edited(
                c,
                &gsi_path(),
                |h| h.push(field("x-nul", b"a\x00b")),
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "header_name_with_space", |c| {
            edited(c, &gsi_path(), |h| h.push(field("x bad", b"1")), gsi_body())
        })
        .refusal(),
        Row::new(g, "unknown_pseudo_header", |c| {
            edited(
                c,
                &gsi_path(),
                |h| h.insert(1, field(":foo", "bar")),
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "pseudo_header_after_regular", |c| {
            edited(
                c,
                &gsi_path(),
                |h| {
                    let auth = h.remove(3);
                    h.push(auth);
                },
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "repeated_path", |c| {
            edited(
                c,
                &gsi_path(),
                |h| h.insert(3, field(":path", method("GetSystemInfo"))),
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "repeated_path_describe_then_gsi", |c| {
            let body = framed(&pb::describe_namespace(BILLING));
            edited(
                c,
                &method("DescribeNamespace"),
                |h| h.insert(3, field(":path", gsi_path())),
                body,
            )
        })
        .effect(Effect::Describe)
        .not_granted()
        .refusal(),
        Row::new(g, "missing_path", |c| {
            edited(c, &gsi_path(), |h| remove(h, ":path"), gsi_body())
        })
        .refusal(),
        Row::new(g, "missing_method", |c| {
            edited(c, &gsi_path(), |h| remove(h, ":method"), gsi_body())
        })
        .refusal(),
        Row::new(g, "missing_scheme", |c| {
            edited(c, &gsi_path(), |h| remove(h, ":scheme"), gsi_body())
        })
        .refusal(),
        Row::new(g, "missing_authority", |c| {
            edited(c, &gsi_path(), |h| remove(h, ":authority"), gsi_body())
        })
        .lenient()
        .note("a proxy supplies :authority upstream"),
        Row::new(g, "method_get", |c| {
            edited(c, &gsi_path(), |h| set(h, ":method", b"GET"), gsi_body())
        })
        .refusal(),
        Row::new(g, "status_pseudo_in_request", |c| {
            edited(
                c,
                &gsi_path(),
                |h| h.insert(1, field(":status", "200")),
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "content_length_bigger", |c| {
            call(
                c,
                "GetSystemInfo",
                &[("content-length", "1000")],
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "content_length_smaller", |c| {
            call(c, "GetSystemInfo", &[("content-length", "2")], gsi_body())
        })
        .refusal(),
        Row::new(g, "content_length_correct", |c| {
            call(c, "GetSystemInfo", &[("content-length", "5")], gsi_body())
        }),
        Row::new(g, "grpc_timeout_malformed", |c| {
            call(c, "GetSystemInfo", &[("grpc-timeout", "abc")], gsi_body())
        })
        .msg(),
        Row::new(g, "grpc_timeout_unit_missing", |c| {
            call(c, "GetSystemInfo", &[("grpc-timeout", "100")], gsi_body())
        })
        .msg(),
        Row::new(g, "grpc_timeout_too_many_digits", |c| {
            call(
                c,
                "GetSystemInfo",
                &[("grpc-timeout", "123456789S")],
                gsi_body(),
            )
        })
        .msg(),
        Row::new(g, "grpc_timeout_zero", |c| {
            call(c, "GetSystemInfo", &[("grpc-timeout", "0n")], gsi_body())
        })
        .msg(),
        Row::new(g, "large_header_40kib", |c| {
            let big = "v".repeat(40 * 1024);
            call(c, "GetSystemInfo", &[("x-large", &big)], gsi_body())
        }),
        Row::new(g, "authority_invalid", |c| {
            edited(
                c,
                &gsi_path(),
                |h| set(h, ":authority", b"bad host!"),
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "accept_gzip_response", |c| {
            call(
                c,
                "DescribeNamespace",
                &[("grpc-accept-encoding", "gzip")],
                framed(&pb::describe_namespace(PAYMENTS)),
            )
        })
        .effect(Effect::Describe),
        Row::new(g, "host_header", |c| {
            call(c, "GetSystemInfo", &[("host", "elsewhere:1")], gsi_body())
        }),
        Row::new(g, "hpack_dynamic_table_reference", |c| {
            // The warm-up added (:path, GetSystemInfo) at index 63 and
            // (x-reuse, 1) at 62.
            let mut h = c.headers(&gsi_path());
            remove(&mut h, ":path");
            h.insert(2, Field::Indexed(63));
            h.push(Field::Indexed(62));
            vec![Step::headers(h), Step::data(gsi_body(), true)]
        })
        .warmup(|c| {
            let mut h = c.headers(&gsi_path());
            for f in h.iter_mut() {
                if f.name() == Some(b":path") {
                    *f = Field::Indexing(b":path".to_vec(), gsi_path().into_bytes());
                }
            }
            h.push(Field::Indexing(b"x-reuse".to_vec(), b"1".to_vec()));
            vec![Step::headers(h), Step::data(gsi_body(), true)]
        }),
        // An empty name is malformed (a stream error for grpc-go), but an
        // incrementally indexed one still enters both HPACK tables; the
        // proxy refuses the call, and its table must stay the client's.
        Row::new(g, "empty_header_name_indexed", |c| {
            edited(
                c,
                &gsi_path(),
                |h| h.push(Field::Indexing(Vec::new(), b"v".to_vec())),
                gsi_body(),
            )
        })
        .refusal(),
        Row::new(g, "empty_header_name_named_from_the_table", |c| {
            // A literal with incremental indexing whose name is dynamic
            // entry 62, the empty name the warm-up added (6-bit prefix).
            edited(
                c,
                &gsi_path(),
                |h| h.push(Field::Raw(vec![0x40 | 62, 3, b'a', b'b', b'c'])),
                gsi_body(),
            )
        })
        .refusal()
        .warmup(|c| {
            edited(
                c,
                &gsi_path(),
                |h| h.push(Field::Indexing(Vec::new(), b"v".to_vec())),
                gsi_body(),
            )
        }),
        Row::new(g, "entry_behind_an_empty_header_name", |c| {
            // The warm-up added (x-before, 1), then (empty, v) and (empty,
            // abc) in front of it: x-before is entry 64 on both sides.
            let mut h = c.headers(&gsi_path());
            h.push(Field::Indexed(64));
            vec![Step::headers(h), Step::data(gsi_body(), true)]
        })
        .warmup(|c| {
            let mut h = c.headers(&gsi_path());
            h.push(Field::Indexing(b"x-before".to_vec(), b"1".to_vec()));
            h.push(Field::Indexing(Vec::new(), b"v".to_vec()));
            h.push(Field::Raw(vec![0x40 | 62, 3, b'a', b'b', b'c']));
            vec![Step::headers(h), Step::data(gsi_body(), true)]
        }),
    ]
}

pub fn path_rows() -> Vec<Row> {
    let g = "paths";
    let gsi = |p: String| move |c: &Ctx| edited(c, &p, |_| {}, gsi_body());
    let dsc =
        |p: String| move |c: &Ctx| edited(c, &p, |_| {}, framed(&pb::describe_namespace(BILLING)));
    let ws = enc::WS;
    vec![
        Row::new(g, "query_string", gsi(format!("{ws}/GetSystemInfo?x=1"))).msg(),
        // Same status; the message shows `~` where the client sent `#`:
        // the proxy turns the bytes `http` cannot carry in a path into `~`
        // below hyper (server::frame_guard::hpack), so it sees the whole path.
        Row::new(g, "fragment", gsi(format!("{ws}/GetSystemInfo#frag"))),
        Row::new(
            g,
            "double_leading_slash",
            gsi(format!("/{ws}/GetSystemInfo")),
        )
        .msg(),
        Row::new(
            g,
            "no_leading_slash",
            gsi(format!("{}/GetSystemInfo", &ws[1..])),
        )
        .refusal()
        .msg(),
        Row::new(
            g,
            "lowercase_service",
            gsi(format!("{}/GetSystemInfo", ws.to_lowercase())),
        )
        .stricter(&[PD])
        .msg(),
        Row::new(g, "lowercase_method", gsi(format!("{ws}/getsysteminfo")))
            .stricter(&[PD])
            .msg(),
        Row::new(g, "trailing_slash", gsi(format!("{ws}/GetSystemInfo/"))).msg(),
        Row::new(g, "unknown_method", gsi(format!("{ws}/NoSuchMethod")))
            .stricter(&[PD])
            .msg(),
        Row::new(
            g,
            "unknown_service",
            gsi("/temporal.api.nosuch.v1.NoService/GetSystemInfo".into()),
        )
        .stricter(&[PD])
        .msg(),
        Row::new(g, "root_only", gsi("/".into())).msg(),
        // As for `fragment`: the same status, `~` in the message.
        Row::new(g, "path_with_space", gsi(format!("{ws}/Get SystemInfo"))).refusal(),
        Row::new(
            g,
            "path_with_non_ascii",
            gsi(format!("{ws}/GetSystemInfo\u{e9}")),
        )
        .refusal(),
        Row::new(g, "empty_path", gsi(String::new())).refusal(),
        Row::new(g, "asterisk", gsi("*".into())).refusal(),
        Row::new(g, "absolute_uri", |c: &Ctx| {
            let p = format!("{}://{}{}/GetSystemInfo", c.scheme, c.authority, enc::WS);
            edited(c, &p, |_| {}, gsi_body())
        })
        .refusal(),
        Row::new(
            g,
            "query_string_describe_billing",
            dsc(format!("{ws}/DescribeNamespace?x=1")),
        )
        .effect(Effect::Describe)
        .not_granted()
        .msg(),
        Row::new(
            g,
            "double_slash_describe_billing",
            dsc(format!("/{ws}/DescribeNamespace")),
        )
        .effect(Effect::Describe)
        .not_granted()
        .msg(),
        Row::new(
            g,
            "dot_segments_gsi_to_describe_billing",
            dsc(format!("{ws}/GetSystemInfo/../DescribeNamespace")),
        )
        .effect(Effect::Describe)
        .not_granted()
        .msg(),
        Row::new(
            g,
            "percent_encoded_describe_billing",
            dsc(format!("{ws}/Describe%4Eamespace")),
        )
        .effect(Effect::Describe)
        .not_granted()
        .msg(),
        Row::new(
            g,
            "gsi_path_with_describe_billing_body",
            dsc(format!("{ws}/GetSystemInfo")),
        )
        .effect(Effect::Describe),
    ]
}

pub fn trailer_rows() -> Vec<Row> {
    let g = "trailers";
    vec![
        Row::new(g, "request_trailers_after_message", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), false),
                Step::trailers(vec![field("x-trailer", "1")]),
            ]
        })
        .lenient(),
        Row::new(g, "request_trailers_empty_block", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), false),
                Step::trailers(Vec::new()),
            ]
        })
        .lenient(),
        Row::new(g, "request_trailers_with_grpc_status", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), false),
                Step::trailers(vec![field("grpc-status", "0")]),
            ]
        })
        .lenient(),
        Row::new(g, "request_trailers_with_pseudo_header", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), false),
                Step::trailers(vec![field(":path", method("DescribeNamespace"))]),
            ]
        })
        .lenient(),
        Row::new(g, "request_trailers_without_data", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::trailers(vec![field("x-trailer", "1")]),
            ]
        })
        .lenient(),
        Row::new(g, "request_trailers_describe_billing", |c| {
            vec![
                Step::headers(c.headers(&method("DescribeNamespace"))),
                Step::data(framed(&pb::describe_namespace(BILLING)), false),
                Step::trailers(vec![field("temporal-namespace", "payments")]),
            ]
        })
        .effect(Effect::Describe)
        .not_granted()
        .lenient(),
    ]
}

pub fn frame_rows() -> Vec<Row> {
    let g = "frames";
    vec![
        Row::new(g, "headers_plus_continuation", |c| {
            vec![
                Step::Headers {
                    fields: c.headers(&method("DescribeNamespace")),
                    end_stream: false,
                    fragment: Some(48),
                },
                Step::data(framed(&pb::describe_namespace(PAYMENTS)), true),
            ]
        })
        .effect(Effect::Describe),
        Row::new(g, "headers_split_into_many_continuations", |c| {
            vec![
                Step::Headers {
                    fields: c.headers(&method("DescribeNamespace")),
                    end_stream: false,
                    fragment: Some(7),
                },
                Step::data(framed(&pb::describe_namespace(PAYMENTS)), true),
            ]
        })
        .effect(Effect::Describe)
        .info(
            "h2 allows at most max(5, 1.25 x header list / frame size) CONTINUATION frames per \
             block (CONTINUATION-flood protection) and answers more with GOAWAY \
             ENHANCE_YOUR_CALM; grpc-go accepts them",
        ),
        Row::new(g, "data_split_inside_prefix", |c| {
            let b = framed(&pb::describe_namespace(PAYMENTS));
            vec![
                Step::headers(c.headers(&method("DescribeNamespace"))),
                Step::data(b[..2].to_vec(), false),
                Step::Pause(Duration::from_millis(20)),
                Step::data(b[2..7].to_vec(), false),
                Step::data(b[7..].to_vec(), true),
            ]
        })
        .effect(Effect::Describe),
        Row::new(g, "empty_data_end_stream_after_message", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), false),
                Step::data(Vec::new(), true),
            ]
        }),
        Row::new(g, "empty_data_frames_before_message", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(Vec::new(), false),
                Step::data(Vec::new(), false),
                Step::data(gsi_body(), true),
            ]
        }),
        Row::new(g, "padded_data_frame", |c| {
            let b = gsi_body();
            let mut p = vec![4u8];
            p.extend_from_slice(&b);
            p.extend_from_slice(&[0; 4]);
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::Frame {
                    ty: frame_type::DATA,
                    flags: flags::END_STREAM | flags::PADDED,
                    payload: p,
                },
            ]
        }),
        Row::new(g, "headers_with_priority_and_padding", |c| {
            let block = crate::support::raw_h2::encode_block(&c.headers(&gsi_path()));
            let mut p = vec![3u8, 0, 0, 0, 0, 15];
            p.extend_from_slice(&block);
            p.extend_from_slice(&[0; 3]);
            vec![
                Step::Frame {
                    ty: frame_type::HEADERS,
                    flags: flags::END_HEADERS | flags::PADDED | flags::PRIORITY,
                    payload: p,
                },
                Step::data(gsi_body(), true),
            ]
        }),
        Row::new(g, "priority_frame_before_headers", |c| {
            vec![
                Step::Frame {
                    ty: frame_type::PRIORITY,
                    flags: 0,
                    payload: vec![0, 0, 0, 0, 15],
                },
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), true),
            ]
        }),
        Row::new(g, "unsolicited_ping_ack", |c| {
            vec![
                Step::ConnFrame {
                    ty: frame_type::PING,
                    flags: flags::ACK,
                    payload: b"unasked!".to_vec(),
                },
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), true),
            ]
        }),
        Row::new(g, "window_update_zero_on_stream", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::Frame {
                    ty: frame_type::WINDOW_UPDATE,
                    flags: 0,
                    payload: vec![0, 0, 0, 0],
                },
                Step::data(gsi_body(), true),
            ]
        })
        .lenient(),
        Row::new(g, "priority_self_dependency", |c| {
            // Stream 1 (the first of the connection) depending on itself.
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::Frame {
                    ty: frame_type::PRIORITY,
                    flags: 0,
                    payload: vec![0, 0, 0, 1, 15],
                },
                Step::data(gsi_body(), true),
            ]
        })
        .lenient()
        .note("RFC 9113 5.3.1: a stream depending on itself is a stream error (PROTOCOL_ERROR)"),
        Row::new(g, "data_after_end_stream", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), true),
                Step::Frame {
                    ty: frame_type::DATA,
                    flags: 0,
                    payload: b"more".to_vec(),
                },
            ]
        })
        .lenient()
        .info(
            "RFC 9113 5.1 lets an endpoint treat frames on a closed stream as a connection \
             error (h2: GOAWAY PROTOCOL_ERROR); grpc-go resets the stream (STREAM_CLOSED). Only \
             the sender's own connection is affected",
        ),
        Row::new(g, "headers_after_end_stream", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), true),
                Step::trailers(vec![field("x-late", "1")]),
            ]
        })
        .lenient()
        .info(
            "a HEADERS frame after END_STREAM: RFC 9113 5.1 lets h2 treat it as a connection \
             error (GOAWAY PROTOCOL_ERROR to the sender); grpc-go answers the call or sends \
             GOAWAY itself, depending on timing. Never forwarded: the bystander is checked",
        ),
        Row::new(g, "settings_enable_push_2", |c| {
            vec![
                Step::ConnFrame {
                    ty: frame_type::SETTINGS,
                    flags: 0,
                    payload: vec![0, 2, 0, 0, 0, 2],
                },
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), true),
            ]
        })
        .info(
            "RFC 9113 6.5.2: SETTINGS_ENABLE_PUSH other than 0 or 1 MUST be a connection error \
             (h2 does so); grpc-go ignores it. Only the sender's own connection is affected",
        ),
        Row::new(g, "settings_initial_window_over_2pow31", |c| {
            vec![
                Step::ConnFrame {
                    ty: frame_type::SETTINGS,
                    flags: 0,
                    payload: vec![0, 4, 0x80, 0, 0, 0],
                },
                Step::headers(c.headers(&gsi_path())),
                Step::data(gsi_body(), true),
            ]
        }),
        Row::new(g, "unknown_frame_type_on_stream", |c| {
            vec![
                Step::headers(c.headers(&gsi_path())),
                Step::Frame {
                    ty: 0x42,
                    flags: 0,
                    payload: b"ignore me".to_vec(),
                },
                Step::data(gsi_body(), true),
            ]
        }),
    ]
}

/// Rows that need a task token or a workflow task (made at set-up).
pub fn task_rows() -> Vec<Row> {
    let g = "tasks";
    let junk_token = b"\xff\xfe not a task token \x00\x01".to_vec();
    vec![
        Row::new(g, "activity_token_of_billing_sent_as_payments", |c| {
            msg(
                c,
                "RespondActivityTaskCompleted",
                &enc::respond_activity_completed(&c.prep.token, PAYMENTS),
            )
        })
        .prep(PrepKind::BillingActivityTask)
        .effect(Effect::ActivityCompleted)
        .not_granted()
        // The frontend's own refusal (with enforcement on) is acceptable in place
        // of its acting on the token's namespace.
        .stricter(&[IA])
        .msg(),
        Row::new(g, "activity_token_of_billing_sent_as_billing", |c| {
            msg(
                c,
                "RespondActivityTaskCompleted",
                &enc::respond_activity_completed(&c.prep.token, BILLING),
            )
        })
        .prep(PrepKind::BillingActivityTask)
        .effect(Effect::ActivityCompleted)
        .not_granted(),
        Row::new(g, "activity_token_undecodable", move |c| {
            msg(
                c,
                "RespondActivityTaskCompleted",
                &enc::respond_activity_completed(&junk_token, PAYMENTS),
            )
        })
        .stricter(&[PD, IA])
        .ns()
        .msg(),
        Row::new(g, "activity_token_empty", |c| {
            msg(
                c,
                "RespondActivityTaskCompleted",
                &enc::respond_activity_completed(&[], PAYMENTS),
            )
        })
        .stricter(&[PD, IA])
        .ns()
        .msg(),
        Row::new(g, "workflow_token_of_billing_sent_as_payments", |c| {
            msg(
                c,
                "RespondWorkflowTaskCompleted",
                &enc::respond_workflow_task_completed(
                    &c.prep.token,
                    &[enc::cmd_complete_workflow()],
                    PAYMENTS,
                ),
            )
        })
        .prep(PrepKind::BillingWorkflowTask)
        .effect(Effect::WorkflowTaskCompleted)
        .not_granted()
        // The frontend's own refusal (with enforcement on) is acceptable in place
        // of its acting on the token's namespace.
        .stricter(&[IA]),
        Row::new(g, "command_start_child_in_billing", |c| {
            let cmd = enc::cmd_start_child(BILLING, &c.child(), IDLE_QUEUE);
            msg(
                c,
                "RespondWorkflowTaskCompleted",
                &enc::respond_workflow_task_completed(&c.prep.token, &[cmd], PAYMENTS),
            )
        })
        .prep(PrepKind::PaymentsWorkflowTask)
        .effect(Effect::ChildStarted)
        .not_granted(),
        Row::new(g, "command_start_child_own_namespace_named", |c| {
            let cmd = enc::cmd_start_child(PAYMENTS, &c.child(), IDLE_QUEUE);
            msg(
                c,
                "RespondWorkflowTaskCompleted",
                &enc::respond_workflow_task_completed(&c.prep.token, &[cmd], PAYMENTS),
            )
        })
        .prep(PrepKind::PaymentsWorkflowTask)
        .effect(Effect::ChildStarted),
        Row::new(g, "command_start_child_namespace_empty", |c| {
            let cmd = enc::cmd_start_child("", &c.child(), IDLE_QUEUE);
            msg(
                c,
                "RespondWorkflowTaskCompleted",
                &enc::respond_workflow_task_completed(&c.prep.token, &[cmd], PAYMENTS),
            )
        })
        .prep(PrepKind::PaymentsWorkflowTask)
        .effect(Effect::ChildStarted),
        Row::new(g, "command_signal_external_in_billing", |c| {
            let cmd = enc::cmd_signal_external(BILLING, &c.prep.target, &c.xsig());
            msg(
                c,
                "RespondWorkflowTaskCompleted",
                &enc::respond_workflow_task_completed(&c.prep.token, &[cmd], PAYMENTS),
            )
        })
        .prep(PrepKind::PaymentsWorkflowTask)
        .effect(Effect::ExternalSignaled)
        .not_granted(),
        Row::new(g, "command_signal_external_own_namespace", |c| {
            let cmd = enc::cmd_signal_external(PAYMENTS, &c.prep.target, &c.xsig());
            msg(
                c,
                "RespondWorkflowTaskCompleted",
                &enc::respond_workflow_task_completed(&c.prep.token, &[cmd], PAYMENTS),
            )
        })
        .prep(PrepKind::PaymentsWorkflowTask)
        .effect(Effect::ExternalSignaled),
        Row::new(g, "command_cancel_external_in_billing", |c| {
            let cmd = enc::cmd_cancel_external(BILLING, &c.prep.target);
            msg(
                c,
                "RespondWorkflowTaskCompleted",
                &enc::respond_workflow_task_completed(&c.prep.token, &[cmd], PAYMENTS),
            )
        })
        .prep(PrepKind::PaymentsWorkflowTask)
        .effect(Effect::CancelRequested)
        .not_granted(),
        Row::new(g, "multi_operation_all_in_payments_control", |c| {
            call(
                c,
                "ExecuteMultiOperation",
                &[("grpc-timeout", "3S")],
                framed(&enc::execute_multi_operation(
                    PAYMENTS,
                    PAYMENTS,
                    &c.wf(),
                    IDLE_QUEUE,
                )),
            )
        })
        .effect(Effect::Workflow)
        .ns()
        .lenient()
        .note(
            "control for the row below (every namespace payments): the update waits for a \
             worker until the 3 s deadline, the workflow is started",
        ),
        Row::new(g, "multi_operation_inner_requests_in_billing", |c| {
            call(
                c,
                "ExecuteMultiOperation",
                &[("grpc-timeout", "3S")],
                framed(&enc::execute_multi_operation(
                    PAYMENTS,
                    BILLING,
                    &c.wf(),
                    IDLE_QUEUE,
                )),
            )
        })
        .effect(Effect::Workflow)
        .not_granted(),
    ]
}

/// Every row.
pub fn all_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(valid_rows());
    rows.extend(protobuf_rows());
    rows.extend(framing_rows());
    rows.extend(header_rows());
    rows.extend(path_rows());
    rows.extend(trailer_rows());
    rows.extend(frame_rows());
    rows.extend(task_rows());
    rows
}

/// The rows that depend on namespaces (run against every server option).
pub fn namespace_rows() -> Vec<Row> {
    all_rows().into_iter().filter(|r| r.ns_relevant).collect()
}
