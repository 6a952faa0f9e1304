//! The committed CRD YAML (deploy/crds/) matches the API types, and the Go-schema example manifests
//! (examples/manifests/) deserialize into them.

use std::path::{Path, PathBuf};

use dr_syncer_core::api::{CRD_FILES, ClusterMapping, NamespaceMapping, RemoteCluster, crd_yaml, crds};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn committed_crds_match_the_types() {
    for (crd, file) in crds().iter().zip(CRD_FILES) {
        let path = root().join("deploy/crds").join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/gen-crds.sh", path.display()));
        let generated = crd_yaml(crd).unwrap();
        let a: Value = serde_saphyr::from_str(&committed).unwrap();
        let b: Value = serde_saphyr::from_str(&generated).unwrap();
        assert!(
            a == b,
            "{} is out of date with the API types: run scripts/gen-crds.sh and commit",
            path.display()
        );
        assert_eq!(
            committed,
            generated,
            "{} differs in formatting: run scripts/gen-crds.sh",
            path.display()
        );
    }
}

#[test]
fn every_example_manifest_deserializes() {
    let dir = root().join("examples/manifests");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let result = match kind.as_str() {
                "RemoteCluster" => serde_json::from_value::<RemoteCluster>(doc).map(|_| ()),
                "ClusterMapping" => serde_json::from_value::<ClusterMapping>(doc).map(|_| ()),
                "NamespaceMapping" => serde_json::from_value::<NamespaceMapping>(doc).map(|_| ()),
                _ => Ok(()),
            };
            result.unwrap_or_else(|e| panic!("{} ({kind}): {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 6, "expected the example manifests in {}", dir.display());
}
