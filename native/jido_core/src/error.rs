//! The one error type of the core crate.

use thiserror::Error;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The input ends before the header or payload it announces.
    #[error("frame is truncated")]
    Truncated,
    /// The input does not start with the frame magic.
    #[error("not a frame (bad magic)")]
    BadMagic,
    /// The frame was written by an unknown codec version.
    #[error("unsupported frame version")]
    BadVersion,
    /// Unknown flag bits or non-zero reserved bytes.
    #[error("unknown frame flags")]
    BadFlags,
    /// Bytes follow the announced payload.
    #[error("bytes after the end of the frame")]
    TrailingBytes,
    /// The checksum does not match the header and payload.
    #[error("checksum mismatch")]
    ChecksumMismatch,
    /// The frame is, or would decode to, more than the configured maximum.
    #[error("frame too large")]
    TooLarge,
    /// The payload does not decompress to the announced length.
    #[error("corrupt payload")]
    CorruptPayload,
    /// The entry table is inconsistent with the payload.
    #[error("bad entry table")]
    BadEntry,
}

impl FrameError {
    /// A short snake_case name, used as the Elixir error atom.
    pub fn name(self) -> &'static str {
        match self {
            FrameError::Truncated => "truncated",
            FrameError::BadMagic => "bad_magic",
            FrameError::BadVersion => "bad_version",
            FrameError::BadFlags => "bad_flags",
            FrameError::TrailingBytes => "trailing_bytes",
            FrameError::ChecksumMismatch => "checksum_mismatch",
            FrameError::TooLarge => "too_large",
            FrameError::CorruptPayload => "corrupt_payload",
            FrameError::BadEntry => "bad_entry",
        }
    }
}
