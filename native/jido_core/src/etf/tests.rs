//! Tests of the ETF walker, against terms OTP wrote and hostile bytes.

use super::walk::*;
use super::*;

/// `elixir --name gen@127.0.0.1 otp_terms.exs` on OTP 25 (see that
/// script): a map holding maps, a struct, a MapSet, a pid, a reference,
/// a port, a closure, an external fun, floats, big integers (small and
/// large), a bitstring, a charlist, nested and improper lists and a
/// 300-element tuple.
const OTP_TERM: &[u8] = include_bytes!("../../tests/fixtures/otp_term.etf");
/// The same term with `minor_version: 2` (every atom UTF-8).
const OTP_TERM_V2: &[u8] = include_bytes!("../../tests/fixtures/otp_term_v2.etf");

fn ok(bytes: &[u8]) -> Result<(), EtfError> {
    check(bytes, 2, Limits::default())
}

fn atoms(bytes: &[u8]) -> Vec<String> {
    distinct_atoms(&[bytes]).expect("walks")
}

fn all_atoms(bytes: &[u8]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    check(bytes, 1, Limits::default()).expect("checks");
    check_with(bytes, 1, Limits::default(), |atom| {
        out.push((atom.name()?.into_owned(), atom.latin1));
        Ok(())
    })
    .expect("walks");
    out
}

// Map keys and values appear in the map's internal order; the expected
// lists below are that order, checked by hand against the term.
const OTP_ATOMS: &[&str] = &[
    "atom_key",
    "plain",
    "ünïcödé_latin1",
    "日本",
    "true",
    "false",
    "nil",
    "bigs",
    "bits",
    "bytes",
    "charlist",
    "closure",
    "Elixir.Jido.EtfFixture",
    "gen@127.0.0.1",
    "export",
    "Elixir.Enum",
    "map",
    "keyword",
    "opt",
    "other",
    "ok",
    "done",
    "large_tuple",
    "mapset",
    "__struct__",
    "Elixir.MapSet",
    "m1",
    "m2",
    "version",
    "nested",
    "deep",
    "improper_tail",
    "pid",
    "port",
    "ref",
    "struct",
    "name",
    "tags",
    "a",
    "b",
];

#[test]
fn walks_everything_otp_encodes() {
    for bytes in [OTP_TERM, OTP_TERM_V2] {
        assert_eq!(check(bytes, 1, Limits::default()), Ok(()));
        assert_eq!(atoms(bytes), OTP_ATOMS);
    }
    // Default encoding: latin-1 atoms as ATOM_EXT, others as UTF-8.
    let default: Vec<_> = all_atoms(OTP_TERM);
    assert!(default.contains(&("ünïcödé_latin1".to_owned(), true)));
    assert!(default.contains(&("日本".to_owned(), false)));
    assert!(all_atoms(OTP_TERM_V2).iter().all(|(_, latin1)| !latin1));
    // Node names come from the pid, the port, the reference and the
    // closure's pid; module names from the struct, the closure and the
    // external fun.
    let node = default.iter().filter(|(a, _)| a == "gen@127.0.0.1");
    assert_eq!(node.count(), 4);
    let module = default
        .iter()
        .filter(|(a, _)| a == "Elixir.Jido.EtfFixture");
    assert_eq!(module.count(), 2);
}

#[test]
fn accepts_two_terms_and_no_more() {
    let two = [OTP_TERM, OTP_TERM_V2].concat();
    assert_eq!(ok(&two), Ok(()));
    let three = [OTP_TERM, OTP_TERM, OTP_TERM].concat();
    assert!(matches!(ok(&three), Err(EtfError::Layout { expected: 2 })));
    // distinct_atoms takes one term per entry.
    assert!(matches!(
        distinct_atoms(&[two]),
        Err(EtfError::Layout { expected: 1 })
    ));
    // Atoms are distinct across entries and across encodings.
    assert_eq!(
        distinct_atoms(&[OTP_TERM, OTP_TERM_V2]),
        Ok(atoms(OTP_TERM))
    );
}

// Bytes produced by OTP 25's term_to_binary, written out by hand.
#[test]
fn atom_texts_are_distinct_and_borrowed() {
    // [:a, :b, :a] twice, then :c: term_to_binary output.
    let list = [
        131u8, 108, 0, 0, 0, 3, 119, 1, b'a', 119, 1, b'b', 119, 1, b'a', 106,
    ];
    let c = [131u8, 119, 1, b'c'];
    let terms: Vec<&[u8]> = vec![&list, &list, &c];
    let texts = distinct_atom_texts(&terms).unwrap();
    assert_eq!(
        texts,
        vec![(&b"a"[..], false), (&b"b"[..], false), (&b"c"[..], false)]
    );
    assert!(matches!(
        distinct_atom_texts(&[&[1u8][..]]),
        Err(EtfError::BadVersion { .. })
    ));
}

#[test]
fn atom_texts_past_the_linear_scan_stay_distinct() {
    // A list of 100 atoms, each twice: a0..a49, a0..a49.
    let mut bytes = vec![131u8, 108, 0, 0, 0, 100];
    for _round in 0..2 {
        for i in 0..50 {
            let name = format!("a{i}");
            bytes.push(119);
            bytes.push(name.len() as u8);
            bytes.extend_from_slice(name.as_bytes());
        }
    }
    bytes.push(106);
    let terms = [&bytes];
    let texts = distinct_atom_texts(&terms).unwrap();
    assert_eq!(texts.len(), 50);
    assert_eq!(texts[49].0, b"a49");
    let strings = distinct_atoms(&[&bytes]).unwrap();
    assert_eq!(strings.len(), 50);
}

#[test]
fn lists_atoms_of_small_terms() {
    // :hello
    assert_eq!(
        atoms(&[131, 119, 5, b'h', b'e', b'l', b'l', b'o']),
        vec!["hello"]
    );
    // {:a, 1, "x", [:b | :c]}
    let t = [
        131, 104, 4, 119, 1, b'a', 97, 1, 109, 0, 0, 0, 1, b'x', 108, 0, 0, 0, 1, 119, 1, b'b',
        119, 1, b'c',
    ];
    assert_eq!(atoms(&t), vec!["a", "b", "c"]);
    // %{k: :k}: repeats are listed once
    let m = [131, 116, 0, 0, 0, 1, 119, 1, b'k', 119, 1, b'k'];
    assert_eq!(atoms(&m), vec!["k"]);
    // latin-1 atom "é", as SMALL_ATOM_EXT and as ATOM_EXT, and the same
    // atom as UTF-8: one name.
    assert_eq!(atoms(&[131, 115, 1, 0xE9]), vec!["é"]);
    let three = [
        131, 108, 0, 0, 0, 2, 100, 0, 1, 0xE9, 119, 2, 0xC3, 0xA9, 106,
    ];
    assert_eq!(atoms(&three), vec!["é"]);
    // An invalid UTF-8 atom passes the check but cannot be listed.
    let bad = [131, 119, 1, 0xE9];
    assert_eq!(check(&bad, 1, Limits::default()), Ok(()));
    assert_eq!(distinct_atoms(&[bad]), Err(EtfError::BadAtom(1)));
}

#[test]
fn lists_atoms_in_every_pid_port_reference_and_fun_form() {
    let node = |bytes: &mut Vec<u8>| bytes.extend_from_slice(&[119, 1, b'n']);
    let mut forms: Vec<Vec<u8>> = Vec::new();
    for (tag, fixed) in [
        (PID_EXT, 9),
        (NEW_PID_EXT, 12),
        (PORT_EXT, 5),
        (NEW_PORT_EXT, 8),
        (V4_PORT_EXT, 12),
        (REFERENCE_EXT, 5),
    ] {
        let mut b = vec![VERSION, tag];
        node(&mut b);
        b.extend(std::iter::repeat_n(0, fixed));
        forms.push(b);
    }
    for (tag, creation) in [(NEW_REFERENCE_EXT, 1), (NEWER_REFERENCE_EXT, 4)] {
        let mut b = vec![VERSION, tag, 0, 3];
        node(&mut b);
        b.extend(std::iter::repeat_n(0, creation + 3 * 4));
        forms.push(b);
    }
    for bytes in &forms {
        assert_eq!(atoms(bytes), vec!["n"], "{bytes:?}");
    }
    // fun m:f/2
    let export = [VERSION, EXPORT_EXT, 119, 1, b'm', 119, 1, b'f', 97, 2];
    assert_eq!(atoms(&export), vec!["m", "f"]);
    let bad_arity = [VERSION, EXPORT_EXT, 119, 1, b'm', 119, 1, b'f', 106];
    assert_eq!(
        ok(&bad_arity),
        Err(EtfError::UnsupportedTag { tag: 106, at: 8 })
    );
    // A closure in module m with one free variable :v.
    let mut fun = vec![VERSION, NEW_FUN_EXT];
    fun.extend([0; 4 + 1 + 16 + 4]);
    fun.extend([0, 0, 0, 1, 119, 1, b'm', 97, 0, 97, 0, NEW_PID_EXT]);
    node(&mut fun);
    fun.extend([0; 12]);
    fun.extend([119, 1, b'v']);
    assert_eq!(atoms(&fun), vec!["m", "n", "v"]);
    // A large tuple and a large big integer.
    let mut large = vec![VERSION, LARGE_TUPLE_EXT, 0, 0, 1, 0];
    large.extend(std::iter::repeat_n([119, 1, b't'], 256).flatten());
    assert_eq!(atoms(&large), vec!["t"]);
    let mut big = vec![VERSION, LARGE_BIG_EXT, 0, 0, 1, 0, 0];
    big.extend([0xff; 256]);
    assert_eq!(ok(&big), Ok(()));
}

#[test]
fn rejects_empty_extra_and_missing_version() {
    assert!(matches!(ok(&[]), Err(EtfError::Layout { .. })));
    let three = [OTP_TERM, OTP_TERM, OTP_TERM].concat();
    assert!(matches!(ok(&three), Err(EtfError::Layout { .. })));
    assert!(matches!(
        ok(&OTP_TERM[1..]),
        Err(EtfError::BadVersion { .. })
    ));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    for bytes in [OTP_TERM, OTP_TERM_V2] {
        for len in 1..bytes.len() {
            assert!(ok(&bytes[..len]).is_err(), "prefix {len} accepted");
            assert!(distinct_atoms(&[&bytes[..len]]).is_err());
        }
    }
}

#[test]
fn every_byte_flip_is_handled() {
    // No panic, whatever the result. (That eetf then decodes accepted
    // bytes without panicking is tested in jido_relay's connection.)
    for i in 0..OTP_TERM.len() {
        for delta in [1u8, 0x80, 0xff] {
            let mut bytes = OTP_TERM.to_vec();
            bytes[i] = bytes[i].wrapping_add(delta);
            let _ = ok(&bytes);
            let _ = distinct_atoms(&[&bytes]);
        }
    }
}

#[test]
fn huge_declared_lengths_are_refused() {
    // LIST_EXT claiming 4 billion elements in a 10-byte message.
    let list = [VERSION, LIST_EXT, 0xff, 0xff, 0xff, 0xff, NIL_EXT, NIL_EXT];
    assert!(matches!(ok(&list), Err(EtfError::BadLength { .. })));
    let binary = [VERSION, BINARY_EXT, 0xff, 0xff, 0xff, 0xff, 0];
    assert!(matches!(ok(&binary), Err(EtfError::BadLength { .. })));
    let map = [VERSION, MAP_EXT, 0x7f, 0xff, 0xff, 0xff, NIL_EXT];
    assert!(matches!(ok(&map), Err(EtfError::BadLength { .. })));
    let fun_vars = [&[VERSION, NEW_FUN_EXT][..], &[0; 25], &[0xff; 4], &[119, 0]].concat();
    assert!(matches!(ok(&fun_vars), Err(EtfError::BadLength { .. })));
}

#[test]
fn deep_nesting_is_refused() {
    // [[[[...]]]] 100k deep: eetf would overflow the stack.
    let depth = 100_000;
    let mut bytes = vec![VERSION];
    for _ in 0..depth {
        bytes.extend_from_slice(&[LIST_EXT, 0, 0, 0, 1]);
    }
    bytes.push(NIL_EXT);
    bytes.extend(std::iter::repeat_n(NIL_EXT, depth));
    assert_eq!(ok(&bytes), Err(EtfError::TooDeep(256)));
    // Within the limit it is fine.
    let limits = Limits {
        max_depth: depth + 2,
        max_terms: 10 * depth as u64,
    };
    assert_eq!(check(&bytes, 1, limits), Ok(()));
    // Listing atoms has no depth limit, and does not recurse either.
    assert_eq!(distinct_atoms(&[&bytes]), Ok(vec![]));
}

#[test]
fn term_count_is_bounded() {
    // A list of 100 empty lists.
    let mut bytes = vec![VERSION, LIST_EXT, 0, 0, 0, 100];
    bytes.extend(std::iter::repeat_n(NIL_EXT, 101));
    let limits = Limits {
        max_depth: 8,
        max_terms: 50,
    };
    assert_eq!(check(&bytes, 1, limits), Err(EtfError::TooManyTerms(50)));
}

#[test]
fn refuses_compressed_cache_refs_and_dist_headers() {
    for tag in [80u8, 82, 68, 121, 117, 0, 255] {
        let bytes = [VERSION, tag, 0, 0, 0, 0, 0, 0];
        assert!(
            matches!(ok(&bytes), Err(EtfError::UnsupportedTag { .. })),
            "tag {tag}"
        );
    }
}

#[test]
fn bitstring_bits_are_checked() {
    let bad = [VERSION, BIT_BINARY_EXT, 0, 0, 0, 1, 0, 0xff];
    assert_eq!(ok(&bad), Err(EtfError::BadBits(0)));
    let good = [VERSION, BIT_BINARY_EXT, 0, 0, 0, 1, 3, 0xe0];
    assert_eq!(ok(&good), Ok(()));
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    let one = |bytes: &[u8]| distinct_atoms(&[bytes]);
    assert_eq!(one(&[]), Err(EtfError::Layout { expected: 1 }));
    assert_eq!(one(&[1, 2]), Err(EtfError::BadVersion { byte: 1, at: 0 }));
    assert!(matches!(
        one(&[131, 108, 255, 255, 255, 255]),
        Err(EtfError::BadLength { .. })
    ));
    assert_eq!(
        one(&[131, 200]),
        Err(EtfError::UnsupportedTag { tag: 200, at: 1 })
    );
    let mut rng = 0x1234_5678_9abc_def0u64;
    for _ in 0..200_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let len = (rng % 40) as usize;
        let mut bytes = vec![131u8];
        let mut r = rng;
        for _ in 0..len {
            r = r.rotate_left(9) ^ 0x9E37_79B9;
            bytes.push(r as u8);
        }
        let _ = one(&bytes);
        let _ = check(&bytes, 2, Limits::default());
        let _ = distinct_atom_texts(&[&bytes]);
    }
}
