//! The model file format (versions 1 and 2), little-endian throughout:
//!
//! ```text
//! offset  size  content
//! 0       8     magic "MODERATO"
//! 8       4     format version (u32)
//! 12      4     reserved, 0
//! 16      8     header length H (u64)
//! 24      8     weight count W (u64)
//! 32      H     header: JSON (model info, featurizer config, heads, table shape and the
//!               per-column scales)
//! 32+H    2·W   weight table, i16, row-major buckets × stride (value = q × scale[column])
//! end-32  32    SHA-256 of every byte before it
//! ```
//!
//! The table is stored exactly as it is scored (see `table`): a 2^20-bucket, 8-column model is
//! 16 MB, and what was evaluated at training time is what loads. Loading checks magic, version,
//! size and checksum before it parses anything, then checks the header against the table.
//!
//! Version 2 is version 1 with a site's own feature weights in some calibration
//! (`Calibration::weights`, written by `moderato calibrate`). It is written only then, so that
//! a build older than those weights refuses the file instead of scoring it without them.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::table::Table;
use super::{Head, Model, ModelInfo};
use crate::error::ModelError;
use crate::features::FeaturizerConfig;

/// Magic bytes at the start of every model file.
pub const MAGIC: &[u8; 8] = b"MODERATO";
/// The newest format version this build writes and reads (it reads 1 too).
pub const FORMAT_VERSION: u32 = 2;
/// The version of a file without site weights, which every build since version 1 reads.
const PLAIN_VERSION: u32 = 1;
/// The largest model file this build loads, in bytes (1 GiB: a 2^24-bucket table of 32
/// columns); a larger file is refused before it is read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;
const PREFIX: usize = 32;
const DIGEST: usize = 32;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    info: ModelInfo,
    featurizer: FeaturizerConfig,
    heads: Vec<Head>,
    rows: u64,
    stride: u64,
    scales: Vec<f32>,
}

/// Serializes a model to bytes (and returns the SHA-256 hex of the whole file, as `sha256sum`
/// prints it).
pub fn to_bytes(model: &Model) -> (Vec<u8>, String) {
    let header = Header {
        info: model.info.clone(),
        featurizer: model.featurizer().config().clone(),
        heads: model.heads().to_vec(),
        rows: model.featurizer().config().buckets() as u64,
        stride: model.stride() as u64,
        scales: model.table().scales().to_vec(),
    };
    let json = serde_json::to_vec(&header).unwrap_or_default();
    let table = model.table().data();
    let mut out = Vec::with_capacity(PREFIX + json.len() + 2 * table.len() + DIGEST);
    let site_weights = model
        .heads()
        .iter()
        .any(|h| h.calibrations.iter().any(|c| !c.weights.is_empty()));
    let version = if site_weights {
        FORMAT_VERSION
    } else {
        PLAIN_VERSION
    };
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&(table.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for v in table {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    let file_sha = hex(&Sha256::digest(&out));
    (out, file_sha)
}

/// Writes a model file atomically (temp file + rename) and records its checksum in the model.
pub fn save(model: &mut Model, path: &Path) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (bytes, sha) = to_bytes(model);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    model.sha256 = sha;
    Ok(())
}

/// Reads and verifies a model file.
pub fn load(path: &Path) -> Result<Model, ModelError> {
    use std::io::Read;
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > MAX_FILE_BYTES {
        return Err(too_large(path, size));
    }
    // Never more than the cap, even if the file grows while it is read.
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    from_bytes(&bytes, path)
}

fn too_large(path: &Path, size: u64) -> ModelError {
    ModelError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit: MAX_FILE_BYTES,
    }
}

/// Verifies and parses model bytes; `path` only names the file in errors.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Model, ModelError> {
    let path_buf = path.to_path_buf();
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(path, bytes.len() as u64));
    }
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(ModelError::BadMagic(path_buf));
    }
    let truncated = |expected: u64| ModelError::Truncated {
        path: path.to_path_buf(),
        expected,
        actual: bytes.len() as u64,
    };
    if bytes.len() < PREFIX + DIGEST {
        return Err(truncated((PREFIX + DIGEST) as u64));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or_default());
    if !(PLAIN_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(ModelError::Version {
            path: path_buf,
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let header_len = u64::from_le_bytes(bytes[16..24].try_into().unwrap_or_default());
    let weights = u64::from_le_bytes(bytes[24..32].try_into().unwrap_or_default());
    let expected = header_len
        .checked_add(weights.saturating_mul(2))
        .and_then(|n| n.checked_add((PREFIX + DIGEST) as u64))
        .unwrap_or(u64::MAX);
    if expected != bytes.len() as u64 {
        return Err(truncated(expected));
    }
    let body_end = bytes.len() - DIGEST;
    let actual = hex(&Sha256::digest(&bytes[..body_end]));
    let recorded = hex(&bytes[body_end..]);
    if actual != recorded {
        return Err(ModelError::Checksum {
            path: path_buf,
            expected: recorded,
            actual,
        });
    }
    let invalid = |reason: String| ModelError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let header_end = PREFIX + header_len as usize;
    let header: Header = serde_json::from_slice(&bytes[PREFIX..header_end])
        .map_err(|e| invalid(format!("header does not parse: {e}")))?;
    if header.rows.checked_mul(header.stride) != Some(weights) {
        return Err(invalid(format!(
            "header says {} rows × {} columns but the file holds {weights} weights",
            header.rows, header.stride
        )));
    }
    let data = &bytes[header_end..body_end];
    let table = Table::from_le_bytes(header.stride as usize, header.scales, data)
        .ok_or_else(|| invalid("the column scales do not match the table".into()))?;
    let mut model =
        Model::from_table(header.info, header.featurizer, header.heads, table).map_err(invalid)?;
    model.sha256 = hex(&Sha256::digest(bytes));
    Ok(model)
}

/// Lower-case hex of `bytes`, as `sha256sum` prints a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 (hex) of the file at `path`, what a model loaded from it carries as `sha256`;
/// read in chunks, so no copy of the file is held in memory.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}
