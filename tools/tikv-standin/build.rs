// The stand-in's gRPC servers are generated from the `.proto` files the `tikv-client` crate
// ships (so both sides speak the same messages), compiled by protox (no system protoc).
// The crate's sources are found in cargo's registry (the version pinned in Cargo.lock), or
// else through `cargo metadata`.

use std::path::PathBuf;

/// `<cargo home>/registry/src/<index>/tikv-client-<version>/proto` for the locked version.
fn from_registry() -> Option<PathBuf> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").ok()?).join("../..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).ok()?;
    let mut lines = lock.lines();
    let mut version = None;
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"tikv-client\"" {
            version = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = \""))
                .map(|v| v.trim_end_matches('"').to_string());
            break;
        }
    }
    let version = version?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    for index in std::fs::read_dir(home.join("registry/src")).ok()?.flatten() {
        let dir = index.path().join(format!("tikv-client-{version}/proto"));
        if dir.join("tikvpb.proto").exists() {
            return Some(dir);
        }
    }
    None
}

fn tikv_client_protos() -> Result<PathBuf, Box<dyn std::error::Error>> {
    if let Some(dir) = from_registry() {
        return Ok(dir);
    }
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
