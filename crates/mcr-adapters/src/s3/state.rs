//! What an S3 upload's recorded [`UploadState`] says, and its encoding.
//!
//! The bytes of an upload are its multipart parts (all exactly
//! [`PART_SIZE`] bytes) followed by its tail: a few piece objects, each
//! shorter than a part, whose lengths strictly decrease (see
//! `upload::merge`). The state names the parts by count and the pieces by
//! length, and carries the running sha256 of every byte, so any replica
//! continues the upload and finishing need not read it again.
//!
//! Encoding (`UploadState::data`, at most 235 bytes):
//! `version u8 = 1 | part size u32 | parts u32 | pieces u8 | piece
//! lengths u32… | sha256 state`, integers big-endian.

use bytes::{BufMut, Bytes, BytesMut};
use mcr_core::error::{Error, Result, StorageError};
use mcr_core::ports::UploadState;
use sha2_resumable::digest::common::hazmat::{SerializableState, SerializedState};
use sha2_resumable::{Digest as _, Sha256};

/// Bytes of every multipart part but the last: S3 wants at least 5 MiB,
/// and R2 wants all but the last of one size. 10 000 parts (S3's limit)
/// make a blob of up to 78 GiB.
pub(super) const PART_SIZE: u64 = 8 << 20;

/// Most pieces a tail has: their lengths strictly decrease and sum to
/// less than [`PART_SIZE`], so there are at most log2(PART_SIZE) + 1.
const MAX_PIECES: usize = PART_SIZE.trailing_zeros() as usize + 1;

const VERSION: u8 = 1;

/// Where an upload stands: its parts, its tail, the hash of it all.
#[derive(Clone)]
pub(super) struct Progress {
    /// Parts uploaded, numbered 1..=parts (`put_part` index 0..parts).
    pub parts: u32,
    /// Lengths of the tail's pieces, oldest (and longest) first.
    pub pieces: Vec<u32>,
    /// The sha256 of every byte so far.
    pub hash: Sha256,
}

impl Progress {
    /// A new, empty upload.
    pub fn new() -> Progress {
        Progress {
            parts: 0,
            pieces: Vec::new(),
            hash: Sha256::new(),
        }
    }

    /// Bytes in the tail.
    pub fn tail_len(&self) -> u64 {
        self.pieces.iter().map(|&l| u64::from(l)).sum()
    }

    /// Offset where the tail starts.
    pub fn tail_start(&self) -> u64 {
        u64::from(self.parts) * PART_SIZE
    }

    /// Bytes in the upload.
    pub fn size(&self) -> u64 {
        self.tail_start() + self.tail_len()
    }

    /// The state the engine records.
    pub fn encode(&self) -> UploadState {
        let hash = self.hash.serialize();
        let mut out = BytesMut::with_capacity(10 + 4 * self.pieces.len() + hash.len());
        out.put_u8(VERSION);
        out.put_u32(PART_SIZE as u32);
        out.put_u32(self.parts);
        // At most MAX_PIECES (24), see `upload::merge`.
        out.put_u8(self.pieces.len() as u8);
        for &len in &self.pieces {
            out.put_u32(len);
        }
        out.put_slice(&hash);
        UploadState {
            size: self.size(),
            data: out.freeze(),
        }
    }

    /// Reads a recorded state; `UploadState::default()` is a new upload.
    /// A state this store did not make (another backend's, a corrupt
    /// one) is a permanent storage error.
    pub fn decode(state: &UploadState) -> Result<Progress> {
        if state.size == 0 && state.data.is_empty() {
            return Ok(Progress::new());
        }
        let progress = parse(&state.data).ok_or_else(|| {
            Error::Storage(StorageError::permanent(
                "resuming an S3 upload",
                format!(
                    "its recorded state ({} bytes) was not made by this store",
                    state.data.len()
                ),
            ))
        })?;
        if progress.size() != state.size {
            return Err(Error::Storage(StorageError::permanent(
                "resuming an S3 upload",
                format!(
                    "its recorded state says {} bytes but describes {}",
                    state.size,
                    progress.size()
                ),
            )));
        }
        Ok(progress)
    }
}

fn parse(data: &Bytes) -> Option<Progress> {
    let mut rest: &[u8] = data;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u32_of = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if take(1)? != [VERSION] || u64::from(u32_of(take(4)?)) != PART_SIZE {
        return None;
    }
    let parts = u32_of(take(4)?);
    let count = usize::from(take(1)?[0]);
    if count > MAX_PIECES {
        return None;
    }
    let mut pieces = Vec::with_capacity(count);
    for _ in 0..count {
        pieces.push(u32_of(take(4)?));
    }
    let serialized = SerializedState::<Sha256>::try_from(rest).ok()?;
    let hash = Sha256::deserialize(&serialized).ok()?;
    let progress = Progress {
        parts,
        pieces,
        hash,
    };
    (progress.tail_len() < PART_SIZE).then_some(progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest encoding: header, every piece, and the hash state.
    const MAX_ENCODED: usize = 1 + 4 + 4 + 1 + 4 * MAX_PIECES + 129;

    #[test]
    fn states_round_trip_with_the_hash_continuing() {
        let mut p = Progress::new();
        p.parts = 3;
        p.pieces = vec![4 << 20, 1000, 7];
        p.hash.update(b"hello ");
        let state = p.encode();
        assert_eq!(state.size, 3 * PART_SIZE + (4 << 20) + 1007);
        assert!(state.data.len() <= MAX_ENCODED);
        let mut q = Progress::decode(&state).unwrap();
        assert_eq!((q.parts, q.pieces.clone()), (3, vec![4 << 20, 1000, 7]));
        q.hash.update(b"world");
        assert_eq!(q.hash.finalize(), Sha256::digest(b"hello world"));
    }

    #[test]
    fn foreign_or_inconsistent_states_are_refused() {
        let fresh = Progress::decode(&UploadState::default()).unwrap();
        assert_eq!(fresh.size(), 0);
        let fs_token = UploadState {
            size: 10,
            data: Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 1]),
        };
        assert!(Progress::decode(&fs_token).is_err());
        let mut p = Progress::new();
        p.pieces = vec![5];
        let mut state = p.encode();
        state.size = 6;
        assert!(Progress::decode(&state).is_err());
    }
}
