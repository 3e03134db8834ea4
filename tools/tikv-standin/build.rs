// The stand-in's gRPC servers are generated from the `.proto` files the `tikv-client` crate
// ships (so both sides speak the same messages), compiled by protox (no system protoc).
// `cargo metadata` says where that crate's sources are.

use std::path::PathBuf;

fn tikv_client_protos() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let pkgs = meta["packages"]
        .as_array()
        .ok_or("no packages in cargo metadata")?;
    for p in pkgs {
        if p["name"] == "tikv-client" {
            let m = p["manifest_path"].as_str().ok_or("no manifest path")?;
            let dir = PathBuf::from(m)
                .parent()
                .ok_or("manifest without a directory")?
                .join("proto");
            return Ok(dir);
        }
    }
    Err("tikv-client is not in the workspace's dependency graph".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = tikv_client_protos()?;
    let include = proto.join("include");
    println!("cargo::rerun-if-changed=build.rs");
    let fds = protox::compile(
        [proto.join("pdpb.proto"), proto.join("tikvpb.proto")],
        [proto.clone(), include],
    )?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .generate_default_stubs(true)
        .out_dir(&out)
        .compile_fds(fds)?;
    // one module per protobuf package, nested by the dots in its name, as the generated
    // code's `super::` paths expect
    let mut tree: std::collections::BTreeMap<Vec<String>, String> = Default::default();
    for e in std::fs::read_dir(&out)? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(pkg) = name.strip_suffix(".rs") {
            if pkg == "mods" {
                continue;
            }
            tree.insert(pkg.split('.').map(String::from).collect(), name.clone());
        }
    }
    let mut src = String::new();
    write_mods(&tree, &[], &mut src);
    std::fs::write(out.join("mods.rs"), src)?;
    Ok(())
}

fn write_mods(
    tree: &std::collections::BTreeMap<Vec<String>, String>,
    at: &[String],
    src: &mut String,
) {
    let mut children: Vec<String> = tree
        .keys()
        .filter(|k| k.len() > at.len() && k.starts_with(at))
        .map(|k| k[at.len()].clone())
        .collect();
    children.dedup();
    for c in children {
        let mut path = at.to_vec();
        path.push(c.clone());
        src.push_str(&format!("pub mod {c} {{\n"));
        if let Some(file) = tree.get(&path) {
            src.push_str(&format!(
                "include!(concat!(env!(\"OUT_DIR\"), \"/{file}\"));\n"
            ));
        }
        write_mods(tree, &path, src);
        src.push_str("}\n");
    }
}
