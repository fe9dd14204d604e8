//! The schemas under `schemas/` are what other languages build against: they must be exactly what the Rust
//! types generate. Regenerate them with `GAMEFORGE_BLESS=1 cargo test -p gameforge-contract --test committed_schemas`.

use std::path::PathBuf;

#[test]
fn committed_schemas_match_the_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let bless = std::env::var_os("GAMEFORGE_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in gameforge_contract::schemas::all() {
        let path = dir.join(&name);
        let expected = gameforge_contract::schemas::render(&schema);
        if bless {
            std::fs::write(&path, &expected).expect("write schema");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == expected => {}
            _ => stale.push(name),
        }
    }
    let committed: Vec<_> = std::fs::read_dir(&dir)
        .expect("schemas dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    let generated: Vec<_> = gameforge_contract::schemas::all().into_iter().map(|(name, _)| name).collect();
    let orphans: Vec<_> = committed.iter().filter(|name| !generated.contains(name)).collect();
    assert!(
        stale.is_empty() && orphans.is_empty(),
        "stale schemas {stale:?}, schemas without a type {orphans:?}; \
         run GAMEFORGE_BLESS=1 cargo test -p gameforge-contract --test committed_schemas"
    );
}
