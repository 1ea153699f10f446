//! Compiles the Temporal API protos into a descriptor set that the
//! `temporal_api` target decodes requests with (prost-reflect), so no
//! protoc is needed. The protos are not kept in this repository: they are
//! read from where the official Python SDK (`temporalio`, installed into
//! .tools/venv by scripts/tools.sh) ships them, the API its clients speak.
//! scripts/fuzz.sh finds that folder and passes it as TEMPORAL_API_PROTOS.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=TEMPORAL_API_PROTOS");
    let Some(root) = std::env::var_os("TEMPORAL_API_PROTOS").map(PathBuf::from) else {
        panic!(
            "TEMPORAL_API_PROTOS is not set: the folder holding temporal/api/... protos \
             (scripts/fuzz.sh sets it from the Python SDK in .tools/venv)"
        );
    };
    let files = [
        "temporal/api/workflowservice/v1/service.proto",
        "temporal/api/operatorservice/v1/service.proto",
    ];
    for file in files {
        if !root.join(file).is_file() {
            panic!("TEMPORAL_API_PROTOS={}: no {file} in it", root.display());
        }
    }
    println!("cargo:rerun-if-changed={}", root.display());
    let set = protox::compile(files, [&root]).unwrap_or_else(|e| {
        panic!(
            "the Temporal API protos in {} do not compile: {e}",
            root.display()
        )
    });
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("temporal_api.bin");
    std::fs::write(out, prost::Message::encode_to_vec(&set)).expect("write the descriptor set");
}
