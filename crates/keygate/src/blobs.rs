//! The blob store: bundle bytes as files in one directory.
//!
//! A blob is streamed to a temporary file while its SHA-256 and size are
//! computed, flushed to disk, then renamed into place: a crash leaves at
//! worst an unreferenced temporary file, never a half-written bundle. The
//! database row that lists a bundle is written only after the rename.
//! Several replicas need this directory on shared storage.

use std::io;
use std::path::{Path, PathBuf};

use axum::body::Body;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// A blob safely on disk.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub key: String,
    /// Hex SHA-256 of the bytes.
    pub checksum: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the upload is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the upload is empty")]
    Empty,
    #[error("the upload was interrupted: {0}")]
    Body(axum::Error),
    #[error("blob store I/O: {0}")]
    Io(#[from] io::Error),
}

impl BlobStore {
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// `Ok` when a file can be created and written in the directory (and
    /// is removed again): what `GET /readyz` asks.
    pub async fn check_writable(&self) -> io::Result<()> {
        let probe = self.dir.join(format!(".readyz-{}", uuid::Uuid::new_v4().simple()));
        let written = async {
            let mut file = tokio::fs::File::create(&probe).await?;
            file.write_all(b"ok").await?;
            file.flush().await
        }
        .await;
        let removed = tokio::fs::remove_file(&probe).await;
        written.and(removed)
    }

    /// Where the blob `key` lives. Keys are generated here, never taken from a request.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// Streams `body` into a new blob of at most `limit` bytes.
    pub async fn write(&self, body: Body, limit: u64) -> Result<StoredBlob, BlobError> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let temporary = self.dir.join(format!(".upload-{key}"));
        let result = self.write_to(&temporary, body, limit).await;
        let (checksum, size) = match result {
            Ok(done) => done,
            Err(error) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(error);
            }
        };
        tokio::fs::rename(&temporary, self.path(&key)).await?;
        // The rename itself is durable only once the directory is synced.
        tokio::fs::File::open(&self.dir).await?.sync_all().await?;
        Ok(StoredBlob { key, checksum, size })
    }

    async fn write_to(&self, path: &Path, mut body: Body, limit: u64) -> Result<(String, u64), BlobError> {
        let mut file = tokio::fs::File::create(path).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BlobError::Body)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            size += data.len() as u64;
            if size > limit {
                return Err(BlobError::TooLarge(limit));
            }
            hasher.update(&data);
            file.write_all(&data).await?;
        }
        if size == 0 {
            return Err(BlobError::Empty);
        }
        // tokio's `File` writes in the background: a failed write surfaces
        // on the next write or flush, and `sync_all` alone would not report
        // it (a full disk would leave a truncated blob acknowledged).
        file.flush().await?;
        file.sync_all().await?;
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Removes what a crash can leave behind: files of uploads that never
    /// finished (`.upload-…`) and blobs no bundle refers to (written, then
    /// the process died before their row was inserted), once they are older
    /// than `grace` (replicas sharing the directory may be between the two
    /// steps of an upload right now). Files that keygate does not name are
    /// left alone. Returns how many files were removed.
    pub async fn remove_orphans(
        &self,
        referenced: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> io::Result<usize> {
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(&self.dir).await?;
        while let Some(entry) = entries.next_entry().await? {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let ours = name.starts_with(".upload-")
                || name.starts_with(".readyz-")
                || (name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ours || referenced.contains(name) {
                continue;
            }
            let age = entry.metadata().await?.modified()?.elapsed().unwrap_or_default();
            if age < grace {
                continue;
            }
            match tokio::fs::remove_file(entry.path()).await {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// Removes blobs whose rows are gone; a failure only leaves a stray file.
    pub async fn remove(&self, keys: &[String]) {
        for key in keys {
            match tokio::fs::remove_file(self.path(key)).await {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(%error, blob = %key, "could not remove a blob"),
            }
        }
    }
}
