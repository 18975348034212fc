//! Attachments in an S3-compatible object store (AWS S3, MinIO, Ceph, R2, …)
//! through the `object_store` crate, so several server nodes share them:
//! [`S3BlobStore`], the other [`BlobStore`].
//!
//! **Layout** in the bucket, the same as on the filesystem:
//! `<org>/<sha256[0..2]>/<sha256>` is a complete, verified file,
//! `<org>/<sha256[0..2]>/<sha256>.thumb.jpg` its thumbnail and
//! `<org>/parts/<sha256>/<device>/<idx>` (eight digits) the chunks of a device's upload in
//! progress, one object each, so any node can take the next chunk.
//!
//! **Assembly** is a multipart upload to the final name fed from the chunk
//! objects as they stream in, hashing them on the way; it is completed only if
//! the SHA-256 is the declared one and aborted otherwise, so the final name
//! never holds an unverified file. Memory stays bounded whatever the file size:
//! one part being filled plus [`PARTS_IN_FLIGHT`] parts being sent.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use super::{Assembled, BlobKey, BlobReader, BlobStore, UploadKey};
use crate::settings::AttachmentSettings;

/// Size of the parts of an assembling multipart upload (S3 wants at least
/// 5 MiB for every part but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one assembly sent at the same time.
const PARTS_IN_FLIGHT: usize = 2;

/// Attachments in one bucket of an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
}

impl S3BlobStore {
    /// The store the settings name. Credentials, region and endpoint not given
    /// in the settings come from the usual `AWS_…` environment variables.
    pub fn from_settings(settings: &AttachmentSettings) -> anyhow::Result<S3BlobStore> {
        let Some(bucket) = &settings.bucket else {
            anyhow::bail!("[attachments] store = \"s3\" needs a bucket");
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(settings.allow_http);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &settings.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let store = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot use the S3 bucket {bucket:?}: {e}"))?;
        Ok(S3BlobStore {
            store: Arc::new(store),
        })
    }

    /// A store over any `object_store` implementation.
    pub fn new(store: Arc<dyn ObjectStore>) -> S3BlobStore {
        S3BlobStore { store }
    }

    fn org_dir(key: &BlobKey) -> String {
        key.org.as_uuid().hyphenated().to_string()
    }

    fn file_path(key: &BlobKey) -> Path {
        let sha = key.sha256.as_str();
        Path::from(format!("{}/{}/{sha}", Self::org_dir(key), &sha[..2]))
    }

    fn thumbnail_path(key: &BlobKey) -> Path {
        let sha = key.sha256.as_str();
        Path::from(format!(
            "{}/{}/{sha}.thumb.jpg",
            Self::org_dir(key),
            &sha[..2]
        ))
    }

    fn parts_dir(upload: &UploadKey) -> Path {
        Path::from(format!(
            "{}/parts/{}/{}",
            Self::org_dir(&upload.file),
            upload.file.sha256,
            upload.device.as_uuid().hyphenated()
        ))
    }

    fn part_path(upload: &UploadKey, idx: u32) -> Path {
        Path::from(format!(
            "{}/parts/{}/{}/{idx:08}",
            Self::org_dir(&upload.file),
            upload.file.sha256,
            upload.device.as_uuid().hyphenated()
        ))
    }

    async fn open_path(&self, path: &Path) -> io::Result<Option<BlobReader>> {
        match self.store.get(path).await {
            Ok(got) => Ok(Some(BlobReader {
                len: got.meta.size,
                body: got.into_stream().map_err(io::Error::from).boxed(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_if_present(&self, path: &Path) -> io::Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_parts(&self, upload: &UploadKey) -> io::Result<()> {
        let parts: Vec<Path> = self
            .store
            .list(Some(&Self::parts_dir(upload)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for part in parts {
            self.delete_if_present(&part).await?;
        }
        Ok(())
    }

    /// Streams the chunks into `upload` while hashing them: (hex SHA-256, size).
    async fn copy_chunks(
        &self,
        key: &UploadKey,
        chunks: u32,
        upload: &mut WriteMultipart,
    ) -> io::Result<(String, u64)> {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        for idx in 0..chunks {
            let mut body = self
                .store
                .get(&Self::part_path(key, idx))
                .await?
                .into_stream();
            while let Some(piece) = body.try_next().await? {
                hasher.update(&piece);
                size += piece.len() as u64;
                upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                upload.put(piece);
            }
        }
        Ok((hex::encode(&hasher.finalize()[..]), size))
    }
}

impl BlobStore for S3BlobStore {
    fn put_chunk<'a>(
        &'a self,
        upload: &'a UploadKey,
        idx: u32,
        data: Bytes,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.store
                .put(&Self::part_path(upload, idx), PutPayload::from(data))
                .await?;
            Ok(())
        })
    }

    fn list_chunks<'a>(&'a self, upload: &'a UploadKey) -> BoxFuture<'a, io::Result<Vec<u32>>> {
        Box::pin(async move {
            let mut found: Vec<u32> = self
                .store
                .list(Some(&Self::parts_dir(upload)))
                .map_ok(|meta| meta.location.filename().and_then(|n| n.parse().ok()))
                .try_collect::<Vec<Option<u32>>>()
                .await?
                .into_iter()
                .flatten()
                .collect();
            found.sort_unstable();
            Ok(found)
        })
    }

    fn assemble<'a>(
        &'a self,
        session: &'a UploadKey,
        chunks: u32,
    ) -> BoxFuture<'a, io::Result<Assembled>> {
        Box::pin(async move {
            let key = &session.file;
            let upload = self.store.put_multipart(&Self::file_path(key)).await?;
            let mut upload = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let (actual, size) = match self.copy_chunks(session, chunks, &mut upload).await {
                Ok(done) => done,
                Err(e) => {
                    if let Err(abort) = upload.abort().await {
                        tracing::warn!(error = %abort, "could not abort a multipart upload");
                    }
                    return Err(e);
                }
            };
            let outcome = if actual == key.sha256.as_str() {
                upload.finish().await?;
                Assembled::Verified { size }
            } else {
                upload.abort().await?;
                Assembled::Mismatch { actual }
            };
            self.delete_parts(session).await?;
            Ok(outcome)
        })
    }

    fn delete_upload<'a>(&'a self, upload: &'a UploadKey) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { self.delete_parts(upload).await })
    }

    fn open<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, io::Result<Option<BlobReader>>> {
        Box::pin(async move { self.open_path(&Self::file_path(key)).await })
    }

    fn put_thumbnail<'a>(&'a self, key: &'a BlobKey, data: Bytes) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.store
                .put(&Self::thumbnail_path(key), PutPayload::from(data))
                .await?;
            Ok(())
        })
    }

    fn open_thumbnail<'a>(
        &'a self,
        key: &'a BlobKey,
    ) -> BoxFuture<'a, io::Result<Option<BlobReader>>> {
        Box::pin(async move { self.open_path(&Self::thumbnail_path(key)).await })
    }

    fn delete<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            self.delete_if_present(&Self::thumbnail_path(key)).await?;
            self.delete_if_present(&Self::file_path(key)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_core::{DeviceId, OrgId};

    use super::*;
    use crate::blob::Sha256Hex;

    /// The same contract as the filesystem store, on `object_store`'s in-memory
    /// store (the S3 client itself is tested against a real S3-compatible server
    /// in `tests/attachments.rs`), with a file over two multipart parts.
    #[tokio::test]
    async fn chunks_assemble_through_a_multipart_upload_and_a_wrong_hash_keeps_nothing() {
        let store = S3BlobStore::new(Arc::new(object_store::memory::InMemory::new()));
        let chunk = 1024 * 1024;
        let data: Vec<u8> = (0..(PART_SIZE * 2 + chunk / 2))
            .map(|i| (i % 251) as u8)
            .collect();
        let key = BlobKey {
            org: OrgId::new(),
            sha256: Sha256Hex::of(&data),
        };
        let upload = UploadKey {
            file: key.clone(),
            device: DeviceId::new(),
        };
        let other_device = UploadKey {
            file: key.clone(),
            device: DeviceId::new(),
        };
        let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
        for (idx, piece) in pieces.iter().enumerate().rev() {
            store
                .put_chunk(&upload, idx as u32, Bytes::copy_from_slice(piece))
                .await
                .expect("put");
        }
        let listed = store.list_chunks(&upload).await.expect("list");
        assert_eq!(listed, (0..pieces.len() as u32).collect::<Vec<_>>());
        assert!(
            store
                .list_chunks(&other_device)
                .await
                .expect("list")
                .is_empty(),
            "another device's upload of the same file has its own chunks"
        );
        let done = store
            .assemble(&upload, pieces.len() as u32)
            .await
            .expect("assemble");
        assert_eq!(
            done,
            Assembled::Verified {
                size: data.len() as u64
            }
        );
        assert!(store.list_chunks(&upload).await.expect("list").is_empty());
        let back = store
            .open(&key)
            .await
            .expect("open")
            .expect("stored")
            .read_to_vec(u64::MAX)
            .await
            .expect("read");
        assert!(back == data);

        let wrong = UploadKey {
            file: BlobKey {
                org: key.org,
                sha256: Sha256Hex::parse(&"0".repeat(64)).expect("hex"),
            },
            device: upload.device,
        };
        store
            .put_chunk(&wrong, 0, Bytes::from_static(b"x"))
            .await
            .expect("put");
        let done = store.assemble(&wrong, 1).await.expect("assemble");
        assert!(matches!(done, Assembled::Mismatch { .. }));
        assert!(store.open(&wrong.file).await.expect("open").is_none());
        assert!(store.list_chunks(&wrong).await.expect("list").is_empty());
        store.delete(&key).await.expect("delete");
        assert!(store.open(&key).await.expect("open").is_none());
    }
}
