//! Atoms shared by the NIF modules.

rustler::atoms! {
    ok,
    error,
    none,
    lz4,
    auto,
    truncated,
    bad_magic,
    bad_version,
    bad_flags,
    trailing_bytes,
    checksum_mismatch,
    too_large,
    corrupt_payload,
    bad_entry,
    bad_term,
    buffer_full,
    drop_oldest,
    empty,
}

/// The Elixir error atom for a core frame error.
pub fn frame_error(err: jido_core::FrameError) -> rustler::Atom {
    use jido_core::FrameError::*;
    match err {
        Truncated => truncated(),
        BadMagic => bad_magic(),
        BadVersion => bad_version(),
        BadFlags => bad_flags(),
        TrailingBytes => trailing_bytes(),
        ChecksumMismatch => checksum_mismatch(),
        TooLarge => too_large(),
        CorruptPayload => corrupt_payload(),
        BadEntry => bad_entry(),
    }
}
