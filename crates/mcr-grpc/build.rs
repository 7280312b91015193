//! Compiles `proto/mcr/v1/*.proto` with protox (pure Rust, no `protoc`)
//! and generates the prost messages and tonic clients and servers.

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
    tonic_prost_build::configure()
        .build_transport(false)
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
