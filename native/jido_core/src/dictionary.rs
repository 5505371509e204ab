//! The built-in lz4 dictionary (version 1) for frame payloads.
//!
//! Small frames compress poorly because the first signal in each has no
//! earlier text to refer back to. Seeding lz4 with the byte sequences that
//! almost every entry carries fixes most of that: the external term format
//! of the atoms and header bytes of a `{destination, {:signal, signal}}`
//! entry whose signal is a CloudEvents-shaped map or a `Jido.Signal`
//! struct. The names come from the CloudEvents 1.0 attribute set and
//! jido_signal's struct fields, not from any benchmark's data.
//!
//! The dictionary is part of the wire format: frames compressed with it
//! carry `FLAG_DICT`, and changing its bytes needs a new frame version.

use std::sync::OnceLock;

const ATOMS: &[&str] = &[
    "signal",
    "Elixir.Jido.Signal",
    "__struct__",
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
    "extensions",
    "jido_dispatch",
    "nil",
    "true",
    "false",
];

const STRINGS: &[&str] = &["1.0.2", "application/json", "/agents/"];

/// The dictionary bytes.
pub fn v1() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut dict = Vec::with_capacity(512);
        for s in STRINGS {
            // As an Elixir binary: BINARY_EXT, u32 length, bytes.
            dict.push(109);
            dict.extend_from_slice(&(s.len() as u32).to_be_bytes());
            dict.extend_from_slice(s.as_bytes());
        }
        for atom in ATOMS {
            // SMALL_ATOM_UTF8_EXT, u8 length, bytes; map keys are sorted and
            // usually follow each other, so keep them adjacent.
            dict.push(119);
            dict.push(atom.len() as u8);
            dict.extend_from_slice(atom.as_bytes());
        }
        // The start of an entry: version, 2-tuple, destination pid tag, and
        // the start of `{:signal, %{...}}`. Last, so it is nearest.
        dict.extend_from_slice(&[131, 104, 2, 88]);
        dict.extend_from_slice(&[104, 2, 119, 6]);
        dict.extend_from_slice(b"signal");
        dict.extend_from_slice(&[116, 0, 0, 0]);
        dict
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn dictionary_is_stable_and_small() {
        let d = super::v1();
        assert!(d.len() < 1024);
        assert_eq!(d, super::v1());
    }
}
