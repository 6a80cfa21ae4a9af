//! The blob store: bundle bytes, in one of two places.
//!
//! - **A directory** (SQLite's default, or `--blob-dir`): a blob is
//!   streamed to a temporary file while its SHA-256 and size are computed,
//!   flushed to disk, then renamed into place: a crash leaves at worst an
//!   unreferenced temporary file, never a half-written bundle. Replicas
//!   would need the directory on shared storage.
//! - **The database** (PostgreSQL's default, [`SharedBlobs`]): the blob is
//!   streamed into chunks of [`CHUNK_SIZE`], each committed on its own, so
//!   that every replica serves every bundle with nothing shared but the
//!   database.
//!
//! Either way the database row that lists a bundle is written only once its
//! blob is complete, and what an interrupted upload leaves is removed at
//! start ([`BlobStore::remove_orphans`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use keygate_store::blob::{CHUNK_SIZE, SharedBlobs};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Runs `work` to its end even when the request that started it is
/// dropped (its client gone, or its time up), so that a blob is never left
/// behind half written, unreferenced, or referenced by nothing: the
/// writes of blobs and of the rows that refer to them go through here.
pub async fn to_completion<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    match tokio::spawn(work).await {
        Ok(done) => done,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => panic!("the runtime stopped during a blob's write: {error}"),
    }
}

#[derive(Clone)]
pub struct BlobStore {
    place: Place,
}

#[derive(Clone)]
enum Place {
    Directory(PathBuf),
    Database(Arc<dyn SharedBlobs>),
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.place {
            Place::Directory(dir) => write!(f, "BlobStore({})", dir.display()),
            Place::Database(_) => f.write_str("BlobStore(database)"),
        }
    }
}

impl BlobStore {
    /// Where bundles are kept, as a log line says it.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Directory(dir) => format!("directory {}", dir.display()),
            Place::Database(_) => "in the database (table bundle_blob_chunks)".to_owned(),
        }
    }
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

/// A database error, as the I/O error the handlers already map (503).
fn database(error: keygate_store::StoreError) -> io::Error {
    io::Error::other(error.to_string())
}

impl BlobStore {
    /// Blobs as files in `dir`, created if missing, for its owner alone.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Self> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir)?;
        Ok(Self { place: Place::Directory(dir) })
    }

    /// Blobs in the database.
    pub fn in_database(shared: Arc<dyn SharedBlobs>) -> Self {
        Self { place: Place::Database(shared) }
    }

    /// How many blobs are kept, temporary files of a directory included.
    pub async fn count(&self) -> io::Result<u64> {
        match &self.place {
            Place::Directory(dir) => {
                let mut entries = tokio::fs::read_dir(dir).await?;
                let mut count = 0;
                while entries.next_entry().await?.is_some() {
                    count += 1;
                }
                Ok(count)
            }
            Place::Database(shared) => shared.count().await.map_err(database),
        }
    }

    /// `Ok` when a file can be created and written in the directory (and
    /// is removed again): what `GET /readyz` asks. In the database, the
    /// database's own check answers.
    pub async fn check_writable(&self) -> io::Result<()> {
        let Place::Directory(dir) = &self.place else { return Ok(()) };
        let probe = dir.join(format!(".readyz-{}", uuid::Uuid::new_v4().simple()));
        to_completion(async move {
            let written = async {
                let mut file = tokio::fs::File::create(&probe).await?;
                file.write_all(b"ok").await?;
                file.flush().await
            }
            .await;
            let removed = tokio::fs::remove_file(&probe).await;
            written.and(removed)
        })
        .await
    }

    /// The bytes of the blob `key` (keys are generated here, never taken
    /// from a request), streamed; an error when they cannot be read.
    pub async fn read(&self, key: &str) -> io::Result<Body> {
        match &self.place {
            Place::Directory(dir) => {
                let file = tokio::fs::File::open(dir.join(key)).await?;
                Ok(Body::from_stream(tokio_util::io::ReaderStream::new(file)))
            }
            Place::Database(shared) => {
                // The first chunk is read now, so that a missing blob is
                // an error rather than an empty download.
                let first = shared.read_chunk(key, 0).await.map_err(database)?;
                let first = first.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such blob"))?;
                let (shared, key) = (shared.clone(), key.to_owned());
                let rest = futures_util::stream::unfold(1, move |seq| {
                    let (shared, key) = (shared.clone(), key.clone());
                    async move {
                        match shared.read_chunk(&key, seq).await {
                            Ok(Some(bytes)) => Some((Ok(Bytes::from(bytes)), seq + 1)),
                            Ok(None) => None,
                            Err(error) => Some((Err(database(error)), i32::MAX)),
                        }
                    }
                });
                let first = futures_util::stream::once(async move { Ok::<_, io::Error>(Bytes::from(first)) });
                Ok(Body::from_stream(futures_util::StreamExt::chain(first, rest)))
            }
        }
    }

    /// Streams `body` into a new blob of at most `limit` bytes.
    pub async fn write(&self, body: Body, limit: u64) -> Result<StoredBlob, BlobError> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let dir = match &self.place {
            Place::Directory(dir) => dir,
            Place::Database(shared) => {
                let result = write_chunks(shared.as_ref(), &key, body, limit).await;
                return match result {
                    Ok((checksum, size)) => Ok(StoredBlob { key, checksum, size }),
                    Err(error) => {
                        let _ = shared.delete(std::slice::from_ref(&key)).await;
                        Err(error)
                    }
                };
            }
        };
        let temporary = dir.join(format!(".upload-{key}"));
        let result = self.write_to(&temporary, body, limit).await;
        let (checksum, size) = match result {
            Ok(done) => done,
            Err(error) => {
                let _ = tokio::fs::remove_file(&temporary).await;
                return Err(error);
            }
        };
        tokio::fs::rename(&temporary, dir.join(&key)).await?;
        // The rename itself is durable only once the directory is synced.
        tokio::fs::File::open(dir).await?.sync_all().await?;
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
        let dir = match &self.place {
            Place::Directory(dir) => dir,
            Place::Database(shared) => {
                let removed = shared.delete_orphans(grace).await.map_err(database)?;
                return Ok(usize::try_from(removed).unwrap_or(usize::MAX));
            }
        };
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(dir).await?;
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
        let dir = match &self.place {
            Place::Directory(dir) => dir,
            Place::Database(shared) => {
                if let Err(error) = shared.delete(keys).await {
                    tracing::warn!(%error, "could not remove blobs; they are removed at the next start");
                }
                return;
            }
        };
        for key in keys {
            match tokio::fs::remove_file(dir.join(key)).await {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => tracing::warn!(%error, blob = %key, "could not remove a blob"),
            }
        }
    }
}

/// Streams `body` into chunks of the blob `key` in the database; returns its
/// hex SHA-256 and size.
async fn write_chunks(
    shared: &dyn SharedBlobs,
    key: &str,
    mut body: Body,
    limit: u64,
) -> Result<(String, u64), BlobError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut seq = 0;
    let mut chunk = Vec::with_capacity(CHUNK_SIZE);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BlobError::Body)?;
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        size += data.len() as u64;
        if size > limit {
            return Err(BlobError::TooLarge(limit));
        }
        hasher.update(&data);
        while !data.is_empty() {
            let take = data.len().min(CHUNK_SIZE - chunk.len());
            chunk.extend_from_slice(&data.split_to(take));
            if chunk.len() == CHUNK_SIZE {
                shared.write_chunk(key, seq, &chunk).await.map_err(database)?;
                seq += 1;
                chunk.clear();
            }
        }
    }
    if size == 0 {
        return Err(BlobError::Empty);
    }
    if !chunk.is_empty() {
        shared.write_chunk(key, seq, &chunk).await.map_err(database)?;
    }
    Ok((hex::encode(hasher.finalize()), size))
}
