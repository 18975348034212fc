//! Thumbnails of photos for the managers' pages: a JPEG whose longest side is
//! [`THUMBNAIL_SIDE`] pixels, made once per photo and kept next to it in the
//! blob store.
//!
//! Only the formats phones send are decoded (JPEG, PNG, WebP; HEIC is not
//! decoded and gets no thumbnail). A photo is untrusted bytes: its dimensions
//! are capped and the decoder's allocations limited before any pixel is
//! decoded, so a small file claiming a huge image (a decompression bomb) is
//! refused instead of exhausting memory. Decoding runs on the blocking pool
//! (`spawn_blocking`), never on the async threads, and at most
//! [`CONCURRENT_DECODES`] at a time per node, which bounds the memory the
//! thumbnails take whatever the upload rate.
//!
//! When a thumbnail is made and where its state is kept is the use case's
//! (`service::attachments`); this module only turns bytes into a thumbnail.

use std::io::Cursor;
use std::sync::OnceLock;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use tokio::sync::Semaphore;

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Largest width or height of a photo that is decoded (a 100-megapixel
/// phone camera is 12,240 pixels wide).
pub const MAX_SIDE: u32 = 16_384;
/// Largest allocation the decoder may make for one photo.
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// Photos decoded at the same time on one node.
pub const CONCURRENT_DECODES: usize = 2;
/// JPEG quality of a thumbnail.
const QUALITY: u8 = 80;

/// Why a photo has no thumbnail.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    /// Not a JPEG, PNG or WebP file.
    #[error("this photo's format is not one a thumbnail is made from (JPEG, PNG or WebP)")]
    Format,
    /// The file is damaged, or over the decoding limits.
    #[error("this photo could not be decoded: {0}")]
    Decode(String),
}

fn permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| Semaphore::new(CONCURRENT_DECODES))
}

/// Waits for a turn to read and decode a photo: hold it until the thumbnail is
/// made, so at most [`CONCURRENT_DECODES`] photos are in memory at once.
pub async fn turn() -> Option<tokio::sync::SemaphorePermit<'static>> {
    permits().acquire().await.ok()
}

/// Whether a file starting with `prefix` is in a format thumbnails are made
/// from (checked before the whole photo is read).
pub fn decodable(prefix: &[u8]) -> bool {
    matches!(
        image::guess_format(prefix),
        Ok(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)
    )
}

/// The thumbnail of `photo` as JPEG bytes, decoded on the blocking pool.
pub async fn make(photo: Vec<u8>) -> Result<Vec<u8>, ThumbnailError> {
    tokio::task::spawn_blocking(move || make_blocking(&photo))
        .await
        .map_err(|e| ThumbnailError::Decode(format!("the decoder stopped: {e}")))?
}

/// The thumbnail of `photo` as JPEG bytes, on the calling thread.
pub fn make_blocking(photo: &[u8]) -> Result<Vec<u8>, ThumbnailError> {
    let decode = |e: image::ImageError| ThumbnailError::Decode(e.to_string());
    let mut reader = ImageReader::new(Cursor::new(photo))
        .with_guessed_format()
        .map_err(|e| ThumbnailError::Decode(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP) => {}
        _ => return Err(ThumbnailError::Format),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode)?;
    // Phones store the camera's rotation beside the pixels.
    let orientation = decoder.orientation().map_err(decode)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode)?;
    image.apply_orientation(orientation);
    let small = image.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).to_rgb8();
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&small)
        .map_err(decode)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, RgbImage};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        });
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .expect("encode");
        out
    }

    /// PNG's CRC-32 (so the forged header is otherwise valid).
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = u32::MAX;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn the_longest_side_becomes_320_and_the_shape_is_kept() {
        let thumb = make_blocking(&png(1200, 900)).expect("thumbnail");
        let back = image::load_from_memory(&thumb).expect("a JPEG");
        assert_eq!((back.width(), back.height()), (320, 240));
    }

    #[test]
    fn a_huge_declared_image_is_refused_before_it_is_decoded() {
        // A valid PNG header claiming 100,000 x 100,000 pixels, and no pixels.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            make_blocking(&bomb),
            Err(ThumbnailError::Decode(_))
        ));
        assert!(matches!(
            make_blocking(b"not a photo at all"),
            Err(ThumbnailError::Format)
        ));
        assert!(!decodable(b"not a photo at all"));
        assert!(decodable(&png(2, 2)[..16]));
    }
}
