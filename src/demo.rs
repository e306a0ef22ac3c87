//! `serve --demo`.
use crate::store::Store;

/// Seeds the demo.
pub async fn seed(_store: &Store) -> anyhow::Result<()> {
    Ok(())
}
