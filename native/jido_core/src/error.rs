//! Error enums that name themselves once.
//!
//! [`named_error!`] defines an enum of unit variants, each with its Elixir
//! name (a snake_case atom text) and its message, written once. The enum gets
//! `Display`, `std::error::Error`, [`ErrorName`] and a list of every variant,
//! so the NIF turns any of them into an atom from `name()` and no crate keeps
//! a parallel list of names.

/// An error that has a short snake_case name, used as the Elixir error atom.
pub trait ErrorName: Copy {
    /// The name, e.g. `"bad_magic"`.
    fn name(self) -> &'static str;
}

/// Defines an error enum of unit variants from one list of
/// `Variant => ("name", "message")`, each optionally documented.
///
/// ```
/// jido_core::named_error! {
///     /// Why a thing failed.
///     pub enum ThingError {
///         /// It was empty.
///         Empty => ("empty", "the thing is empty"),
///     }
/// }
/// assert_eq!(ThingError::Empty.name(), "empty");
/// assert_eq!(ThingError::Empty.to_string(), "the thing is empty");
/// assert_eq!(ThingError::ALL, &[ThingError::Empty]);
/// ```
#[macro_export]
macro_rules! named_error {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident {
            $( $(#[doc = $doc:literal])* $Variant:ident => ($name:literal, $message:literal) ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $Enum {
            $( $(#[doc = $doc])* $Variant ),+
        }

        impl $Enum {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$Enum] = &[$($Enum::$Variant),+];

            /// The short snake_case name, used as the Elixir error atom.
            pub fn name(self) -> &'static str {
                match self {
                    $( $Enum::$Variant => $name ),+
                }
            }

            /// The variant named `name`, if any.
            pub fn from_name(name: &str) -> Option<$Enum> {
                match name {
                    $( $name => Some($Enum::$Variant), )+
                    _ => None,
                }
            }
        }

        impl $crate::error::ErrorName for $Enum {
            fn name(self) -> &'static str {
                $Enum::name(self)
            }
        }

        impl ::std::fmt::Display for $Enum {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(match self {
                    $( $Enum::$Variant => $message ),+
                })
            }
        }

        impl ::std::error::Error for $Enum {}
    };
}

named_error! {
    /// Why a frame could not be encoded or decoded.
    pub enum FrameError {
        /// The input ends before the header or payload it announces.
        Truncated => ("truncated", "frame is truncated"),
        /// The input does not start with the frame magic.
        BadMagic => ("bad_magic", "not a frame (bad magic)"),
        /// The frame was written by an unknown codec version.
        BadVersion => ("bad_version", "unsupported frame version"),
        /// Unknown flag bits or non-zero reserved bytes.
        BadFlags => ("bad_flags", "unknown frame flags"),
        /// Bytes follow the announced payload.
        TrailingBytes => ("trailing_bytes", "bytes after the end of the frame"),
        /// The checksum does not match the header and payload.
        ChecksumMismatch => ("checksum_mismatch", "checksum mismatch"),
        /// The frame is, or would decode to, more than the configured maximum.
        TooLarge => ("too_large", "frame too large"),
        /// The payload does not decompress to the announced length.
        CorruptPayload => ("corrupt_payload", "corrupt payload"),
        /// The entry table is inconsistent with the payload.
        BadEntry => ("bad_entry", "bad entry table"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::PushError;
    use crate::tree::PlanError;
    use std::collections::HashSet;

    fn check<E>(all: &[E], from_name: fn(&str) -> Option<E>)
    where
        E: ErrorName + std::fmt::Display + PartialEq + std::fmt::Debug,
    {
        let mut seen = HashSet::new();
        for &err in all {
            let name = ErrorName::name(err);
            assert!(seen.insert(name), "{name} named twice");
            assert!(!name.is_empty());
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert_eq!(from_name(name), Some(err));
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(from_name("no_such_error"), None);
    }

    #[test]
    fn every_error_names_itself_once_in_snake_case() {
        check(FrameError::ALL, FrameError::from_name);
        check(PlanError::ALL, PlanError::from_name);
        check(PushError::ALL, PushError::from_name);
        assert_eq!(FrameError::ALL.len(), 9);
        assert_eq!(FrameError::BadMagic.name(), "bad_magic");
        assert_eq!(PushError::Full.name(), "buffer_full");
    }

    #[test]
    fn messages_come_from_the_definition() {
        assert_eq!(FrameError::Truncated.to_string(), "frame is truncated");
        assert_eq!(
            PlanError::BadFanout.to_string(),
            "fanout must be at least 1"
        );
    }
}
