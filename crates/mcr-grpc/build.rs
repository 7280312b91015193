//! Compiles `proto/mcr/v1/*.proto` with protox (pure Rust, no `protoc`)
//! and generates the prost messages and tonic clients and servers, and
//! `methods.rs`: every RPC's path, for the metrics' label values.

use std::path::PathBuf;

const FILES: [&str; 5] = ["common", "registry", "policy", "audit", "admin"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = FILES
        .iter()
        .map(|f| root.join(format!("mcr/v1/{f}.proto")))
        .collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    let mut methods = String::from(
        "/// Every RPC, as (`/package.Service/Method`, service, method).\n\
         pub const METHODS: &[(&str, &str, &str)] = &[\n",
    );
    for file in &descriptors.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            for method in &service.method {
                methods.push_str(&format!(
                    "    (\"/{full}/{m}\", \"{full}\", \"{m}\"),\n",
                    m = method.name()
                ));
            }
        }
    }
    methods.push_str("];\n");
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR")?).join("methods.rs"),
        methods,
    )?;
    tonic_prost_build::configure()
        .build_transport(false)
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
