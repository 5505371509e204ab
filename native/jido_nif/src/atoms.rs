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
    bad_fanout,
    bad_member,
    duplicate_member,
    root_not_member,
    too_many_members,
    root_removed,
    unknown_node,
    busy,
    invalid,
    duplicate,
    gap,
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

/// The Elixir error atom for a core tree planning error.
pub fn plan_error(err: jido_core::tree::PlanError) -> rustler::Atom {
    use jido_core::tree::PlanError::*;
    match err {
        BadFanout => bad_fanout(),
        RootNotMember => root_not_member(),
        TooManyMembers => too_many_members(),
        RootRemoved => root_removed(),
        UnknownNode => unknown_node(),
    }
}

/// Looks up existing atoms by their text (`latin1` tells the encoding);
/// never creates one. Returns the atoms found and, as binaries, the names
/// this NIF version cannot look up (UTF-8 beyond Latin-1) or that do not
/// exist, for the caller to convert.
pub fn lookup_existing<'a, 'b>(
    env: rustler::Env<'a>,
    texts: impl Iterator<Item = (&'b [u8], bool)>,
) -> (Vec<rustler::Atom>, Vec<rustler::Term<'a>>) {
    use rustler::Atom;
    let mut found = Vec::new();
    let mut names = Vec::new();
    for (text, latin1) in texts {
        let atom = if latin1 || text.is_ascii() {
            Atom::existing_from_bytes(env, text)
        } else {
            Atom::existing_from_utf8_bytes(env, text)
        };
        match atom {
            Ok(atom) => found.push(atom),
            Err(_) => {
                names.push(crate::binary::copy(env, text).to_term(env));
            }
        }
    }
    (found, names)
}
