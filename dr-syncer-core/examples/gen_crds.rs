//! Write the CRDs of dr-syncer's custom resources into a directory, one file each (used by
//! `scripts/gen-crds.sh`): `cargo run -p dr-syncer-core --example gen_crds -- deploy/crds`.

use std::path::PathBuf;

use dr_syncer_core::api::{CRD_FILES, crd_yaml, crds};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: gen_crds DIR")?);
    for (crd, file) in crds().iter().zip(CRD_FILES) {
        std::fs::write(dir.join(file), crd_yaml(crd)?)?;
        println!("wrote {}", dir.join(file).display());
    }
    Ok(())
}
