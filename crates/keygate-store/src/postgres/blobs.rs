//! Bundle bytes in PostgreSQL ([`SharedBlobs`]): `bundle_blob_chunks`.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::Result;
use crate::blob::SharedBlobs;

pub(super) struct PgBlobs {
    pub(super) pool: PgPool,
}

#[async_trait]
impl SharedBlobs for PgBlobs {
    async fn write_chunk(&self, key: &str, seq: i32, bytes: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO bundle_blob_chunks (blob_key, seq, bytes) VALUES ($1, $2, $3)")
            .bind(key)
            .bind(seq)
            .bind(bytes)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn read_chunk(&self, key: &str, seq: i32) -> Result<Option<Vec<u8>>> {
        let bytes =
            sqlx::query_scalar("SELECT bytes FROM bundle_blob_chunks WHERE blob_key = $1 AND seq = $2")
                .bind(key)
                .bind(seq)
                .fetch_optional(&self.pool)
                .await?;
        Ok(bytes)
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        sqlx::query("DELETE FROM bundle_blob_chunks WHERE blob_key = ANY($1)")
            .bind(keys)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_orphans(&self, grace: Duration) -> Result<u64> {
        let grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let deleted: Vec<String> = sqlx::query_scalar(
            "DELETE FROM bundle_blob_chunks c \
             WHERE c.written_at < now() - make_interval(secs => $1::double precision / 1000) \
               AND NOT EXISTS (SELECT 1 FROM bundles b WHERE b.blob_key = c.blob_key) \
             RETURNING c.blob_key",
        )
        .bind(grace)
        .fetch_all(&self.pool)
        .await?;
        let blobs: std::collections::HashSet<String> = deleted.into_iter().collect();
        Ok(blobs.len() as u64)
    }

    async fn count(&self) -> Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT count(DISTINCT blob_key) FROM bundle_blob_chunks")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
