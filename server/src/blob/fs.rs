//! Attachments as files: [`FsBlobStore`], the [`BlobStore`] of a single node
//! (the default), under `<data_dir>/attachments`.
//!
//! **Layout.** `<org>/<sha256[0..2]>/<sha256>` is a complete, verified file,
//! `<org>/<sha256[0..2]>/<sha256>.thumb.jpg` its thumbnail (photos) and
//! `<org>/.parts/<sha256>/<device>/<idx>` the chunks of a device's upload in
//! progress. Every file
//! is written to a temporary name in its final directory, fsynced, renamed into
//! place and its directory fsynced, so a crash leaves either the whole file or
//! nothing under the final name (stray `.tmp-` files are ignored).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Assembled, BlobKey, BlobReader, BlobStore, COPY_BUFFER, UploadKey, read_stream};

/// Attachments as files under a root directory (`<data_dir>/attachments`).
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> FsBlobStore {
        FsBlobStore { root: root.into() }
    }

    /// `<root>/<org>/<sha[0..2]>/<sha>`. Safe by construction: the org is a
    /// UUID and the hash 64 hex digits.
    pub fn file_path(&self, key: &BlobKey) -> PathBuf {
        let sha = key.sha256.as_str();
        self.root
            .join(key.org.as_uuid().hyphenated().to_string())
            .join(&sha[..2])
            .join(sha)
    }

    /// `<root>/<org>/<sha[0..2]>/<sha>.thumb.jpg`.
    pub fn thumbnail_path(&self, key: &BlobKey) -> PathBuf {
        let mut path = self.file_path(key).into_os_string();
        path.push(".thumb.jpg");
        PathBuf::from(path)
    }

    /// `<root>/<org>/.parts/<sha>/<device>`.
    fn parts_dir(&self, upload: &UploadKey) -> PathBuf {
        self.root
            .join(upload.file.org.as_uuid().hyphenated().to_string())
            .join(".parts")
            .join(upload.file.sha256.as_str())
            .join(upload.device.as_uuid().hyphenated().to_string())
    }

    fn part_path(&self, upload: &UploadKey, idx: u32) -> PathBuf {
        self.parts_dir(upload).join(format!("{idx:08}"))
    }
}

/// A temporary name next to `path`.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", uuid::Uuid::now_v7().simple()))
}

/// Makes a rename in `dir` durable.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

/// Renames the fsynced `tmp` to `path` and fsyncs the directory.
async fn publish(tmp: &Path, path: &Path) -> io::Result<()> {
    tokio::fs::rename(tmp, path).await?;
    match path.parent() {
        Some(dir) => sync_dir(dir).await,
        None => Ok(()),
    }
}

/// Writes `data` to `path` durably: a temporary name, fsync, rename, fsync of
/// the directory.
async fn write_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = temp_beside(path);
    let written = async {
        let mut file = tokio::fs::File::create(&tmp).await?;
        file.write_all(data).await?;
        file.sync_all().await?;
        publish(&tmp, path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}

/// Opens `path` for a streaming read, `None` if it does not exist.
async fn open_file(path: &Path) -> io::Result<Option<BlobReader>> {
    let file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata().await?.len();
    Ok(Some(BlobReader {
        len,
        body: read_stream(Box::pin(file)),
    }))
}

async fn remove_file_if_present(path: &Path) -> io::Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

async fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl BlobStore for FsBlobStore {
    fn put_chunk<'a>(
        &'a self,
        upload: &'a UploadKey,
        idx: u32,
        data: Bytes,
    ) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { write_durably(&self.part_path(upload, idx), &data).await })
    }

    fn list_chunks<'a>(&'a self, upload: &'a UploadKey) -> BoxFuture<'a, io::Result<Vec<u32>>> {
        Box::pin(async move {
            let mut dir = match tokio::fs::read_dir(self.parts_dir(upload)).await {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut found = Vec::new();
            while let Some(entry) = dir.next_entry().await? {
                // Temporary files start with a dot and do not parse.
                if let Some(idx) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    found.push(idx);
                }
            }
            found.sort_unstable();
            Ok(found)
        })
    }

    fn assemble<'a>(
        &'a self,
        upload: &'a UploadKey,
        chunks: u32,
    ) -> BoxFuture<'a, io::Result<Assembled>> {
        Box::pin(async move {
            let key = &upload.file;
            let path = self.file_path(key);
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let tmp = temp_beside(&path);
            let copied = async {
                let mut out = tokio::fs::File::create(&tmp).await?;
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let mut buf = vec![0u8; COPY_BUFFER];
                for idx in 0..chunks {
                    let mut part = tokio::fs::File::open(self.part_path(upload, idx)).await?;
                    loop {
                        let n = part.read(&mut buf).await?;
                        if n == 0 {
                            break;
                        }
                        let bytes = buf.get(..n).unwrap_or_default();
                        hasher.update(bytes);
                        out.write_all(bytes).await?;
                        size += n as u64;
                    }
                }
                out.sync_all().await?;
                Ok::<_, io::Error>((hex::encode(&hasher.finalize()[..]), size))
            }
            .await;
            let (actual, size) = match copied {
                Ok(done) => done,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(e);
                }
            };
            let outcome = if actual == key.sha256.as_str() {
                publish(&tmp, &path).await?;
                Assembled::Verified { size }
            } else {
                tokio::fs::remove_file(&tmp).await?;
                Assembled::Mismatch { actual }
            };
            remove_dir_if_present(&self.parts_dir(upload)).await?;
            Ok(outcome)
        })
    }

    fn delete_upload<'a>(&'a self, upload: &'a UploadKey) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { remove_dir_if_present(&self.parts_dir(upload)).await })
    }

    fn open<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, io::Result<Option<BlobReader>>> {
        Box::pin(async move { open_file(&self.file_path(key)).await })
    }

    fn put_thumbnail<'a>(&'a self, key: &'a BlobKey, data: Bytes) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move { write_durably(&self.thumbnail_path(key), &data).await })
    }

    fn open_thumbnail<'a>(
        &'a self,
        key: &'a BlobKey,
    ) -> BoxFuture<'a, io::Result<Option<BlobReader>>> {
        Box::pin(async move { open_file(&self.thumbnail_path(key)).await })
    }

    fn delete<'a>(&'a self, key: &'a BlobKey) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            remove_file_if_present(&self.thumbnail_path(key)).await?;
            remove_file_if_present(&self.file_path(key)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use fieldsync_core::{DeviceId, OrgId};

    use super::*;
    use crate::blob::Sha256Hex;

    #[tokio::test]
    async fn chunks_assemble_into_the_verified_file_and_a_wrong_hash_keeps_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::new(dir.path());
        let data = b"hello, attachments".to_vec();
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
        store
            .put_chunk(&upload, 1, Bytes::copy_from_slice(&data[10..]))
            .await
            .expect("put");
        store
            .put_chunk(&upload, 0, Bytes::copy_from_slice(&data[..10]))
            .await
            .expect("put");
        assert_eq!(store.list_chunks(&upload).await.expect("list"), vec![0, 1]);
        assert!(
            store
                .list_chunks(&other_device)
                .await
                .expect("list")
                .is_empty(),
            "another device's upload of the same file has its own chunks"
        );
        let done = store.assemble(&upload, 2).await.expect("assemble");
        assert_eq!(
            done,
            Assembled::Verified {
                size: data.len() as u64
            }
        );
        assert!(store.list_chunks(&upload).await.expect("list").is_empty());
        let reader = store.open(&key).await.expect("open").expect("stored");
        let back = reader.read_to_vec(1024).await.expect("read");
        assert_eq!(back, data);
        store
            .put_thumbnail(&key, Bytes::from_static(b"thumb"))
            .await
            .expect("thumbnail");
        let thumb = store
            .open_thumbnail(&key)
            .await
            .expect("open")
            .expect("stored");
        assert_eq!(thumb.read_to_vec(1024).await.expect("read"), b"thumb");

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
        assert!(store.open_thumbnail(&key).await.expect("open").is_none());
    }
}
