//! Where attachment bytes live: the [`BlobStore`] trait, its two
//! implementations ([`FsBlobStore`], files under `<data_dir>/attachments`, and
//! [`S3BlobStore`], an S3-compatible bucket several nodes share), and photo
//! [`thumbnail`]s. Infrastructure: it knows bytes and keys, not who may read
//! them (that is `service::attachments`) nor HTTP (that is `http` and `web`,
//! which turn a [`BlobReader`] into a response body).
//!
//! The trait is the whole contract the use cases rely on: store one verified
//! chunk, list the stored chunks, assemble them into the file while checking its
//! SHA-256, open the file for a streaming read, keep a photo's thumbnail next to
//! it, delete. Its futures are boxed so the context can hold an `Arc<dyn BlobStore>`.
//!
//! Keys ([`BlobKey`], [`Sha256Hex`]) are the domain's (`domain::attachments`),
//! re-exported here: a hash is checked to be 64 lowercase hex digits before it
//! becomes a key, so no key names a path of a client's choosing.

mod fs;
mod s3;
pub mod thumbnail;

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use crate::domain::attachments::{BlobKey, Sha256Hex, UploadKey};
pub use fs::FsBlobStore;
pub use s3::S3BlobStore;

use crate::settings::{BlobStoreKind, Settings};

/// Read buffer of assembling and streaming.
pub(crate) const COPY_BUFFER: usize = 64 * 1024;

/// The blob store the settings name: files under `<data_dir>/attachments`, or
/// an S3-compatible bucket.
pub fn open_blob_store(settings: &Settings) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match settings.attachments.store {
        BlobStoreKind::Filesystem => {
            Arc::new(FsBlobStore::new(settings.data_dir.join("attachments")))
        }
        BlobStoreKind::S3 => Arc::new(S3BlobStore::from_settings(&settings.attachments)?),
    })
}

/// What [`BlobStore::assemble`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// The chunks make the declared file; it is stored and the chunks are gone.
    Verified {
        /// Its size in bytes.
        size: u64,
    },
    /// The chunks hash to something else; nothing is stored and the chunks are gone.
    Mismatch {
        /// The hash the chunks produced.
        actual: String,
    },
}

/// A stored file opened for reading.
pub struct BlobReader {
    /// Its length in bytes.
    pub len: u64,
    /// Its bytes, in pieces as the store hands them over (never the whole file
    /// at once). An error ends the stream.
    pub body: BoxStream<'static, io::Result<Bytes>>,
}

impl BlobReader {
    /// Reads the whole file into memory, refusing one longer than `limit` bytes
    /// (for a photo being turned into a thumbnail; downloads stream `body`).
    pub async fn read_to_vec(mut self, limit: u64) -> io::Result<Vec<u8>> {
        if self.len > limit {
            return Err(io::Error::other(format!(
                "{} bytes is over the limit of {limit}",
                self.len
            )));
        }
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        while let Some(piece) = self.body.next().await {
            let piece = piece?;
            if (out.len() + piece.len()) as u64 > limit {
                return Err(io::Error::other(format!(
                    "the stored file is over the limit of {limit} bytes"
                )));
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobReader")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A file as a stream of pieces of at most [`COPY_BUFFER`] bytes.
pub(crate) fn read_stream(
    reader: Pin<Box<dyn AsyncRead + Send>>,
) -> BoxStream<'static, io::Result<Bytes>> {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; COPY_BUFFER];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(reader)))
            }
            // Ends the stream after the error: the reader sees a short read.
            Err(e) => Some((Err(e), None)),
        }
    })
    .boxed()
}

/// Storage of attachment bytes. Chunks belong to one upload session
/// ([`UploadKey`]: a file and the device uploading it) and are numbered from
/// 0; the use cases check sizes and hashes of chunks before `put_chunk`, the
/// store checks the whole file's hash in `assemble`.
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores chunk `idx` of `upload`, replacing any stored one, durably.
    fn put_chunk<'a>(
        &'a self,
        upload: &'a UploadKey,
        idx: u32,
        data: Bytes,
    ) -> BoxFuture<'a, io::Result<()>>;

    /// The indexes of the stored chunks of `upload`, ascending.
    fn list_chunks<'a>(&'a self, upload: &'a UploadKey) -> BoxFuture<'a, io::Result<Vec<u32>>>;

    /// Concatenates chunks `0..chunks` of `upload` into the file
    /// `upload.file` (streaming), keeps it only if its SHA-256 is the file's
    /// (replacing an equal copy another upload stored), and drops the
    /// upload's chunks either way.
    fn assemble<'a>(
        &'a self,
        upload: &'a UploadKey,
        chunks: u32,
    ) -> BoxFuture<'a, io::Result<Assembled>>;

    /// Removes the chunks of `upload` (missing ones are not an error).
    fn delete_upload<'a>(&'a self, upload: &'a UploadKey) -> BoxFuture<'a, io::Result<()>>;

    /// The complete file of `key`, if stored.
    fn open<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, io::Result<Option<BlobReader>>>;

    /// Stores the thumbnail of the complete file of `key`, replacing any, durably.
    fn put_thumbnail<'a>(&'a self, key: &'a BlobKey, data: Bytes) -> BoxFuture<'a, io::Result<()>>;

    /// The thumbnail of `key`, if stored.
    fn open_thumbnail<'a>(
        &'a self,
        key: &'a BlobKey,
    ) -> BoxFuture<'a, io::Result<Option<BlobReader>>>;

    /// Removes the file of `key` and its thumbnail (missing ones are not an
    /// error); uploads of it in progress keep their chunks.
    fn delete<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, io::Result<()>>;
}
