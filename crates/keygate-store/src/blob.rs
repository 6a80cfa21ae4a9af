//! Bundle bytes kept by the database itself, where a backend can share them
//! between replicas ([`Store::shared_blobs`](crate::Store::shared_blobs)):
//! PostgreSQL keeps them as numbered chunks, each written and committed on
//! its own, before the bundle row that names the blob is inserted, so a
//! listed bundle is always whole. Chunks no bundle names are what a failed
//! upload or a crash leaves; [`SharedBlobs::delete_orphans`] removes them.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// The size of a chunk, but the last: bytes are read and written a chunk
/// at a time, never a whole bundle.
pub const CHUNK_SIZE: usize = 1024 * 1024;

#[async_trait]
pub trait SharedBlobs: Send + Sync + 'static {
    /// Stores chunk `seq` (from 0) of the blob `key`, durably.
    async fn write_chunk(&self, key: &str, seq: i32, bytes: &[u8]) -> Result<()>;
    /// Chunk `seq` of `key`; `None` past its last chunk (or for no blob).
    async fn read_chunk(&self, key: &str, seq: i32) -> Result<Option<Vec<u8>>>;
    /// Removes the blobs `keys`, whose bundles are gone.
    async fn delete(&self, keys: &[String]) -> Result<()>;
    /// Removes the chunks of blobs no bundle names, written over `grace`
    /// ago (a replica may be between the two steps of an upload now);
    /// returns how many blobs went.
    async fn delete_orphans(&self, grace: Duration) -> Result<u64>;
    /// How many blobs are stored (for tests and operators).
    async fn count(&self) -> Result<u64>;
}
