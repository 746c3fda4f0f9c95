use super::*;
use serde::Deserialize;

fn meta<T>() -> Meta {
    Meta {
        type_fingerprint: type_fingerprint::<T>(),
        key_check: 7,
        written_at_ms: 1_000,
        expires_at_ms: 2_000,
    }
}

/// An envelope for `T` around `payload`, as an attacker would write it.
fn forged<C: Codec, T>(payload: &[u8]) -> Vec<u8> {
    let mut bytes = seal::<C, _>(&(), &meta::<T>()).unwrap();
    bytes.truncate(HEADER_LEN);
    bytes.extend_from_slice(payload);
    bytes
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Leaf(u8),
    Node(Box<Tree>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct List(Option<Box<List>>);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Nested {
    children: Vec<Nested>,
}

#[test]
fn a_sealed_value_opens_with_its_header_in_every_codec() {
    let value = ("hello".to_string(), 5u32);
    for kind in [CodecKind::MessagePack, CodecKind::Json] {
        let bytes = kind.seal(&value, &meta::<(String, u32)>(), 1024).unwrap();
        let id = [MessagePack::ID, Json::ID][kind as usize];
        assert_eq!(&bytes[..4], &[b'L', b'C', ENVELOPE_FORMAT, id]);
        let (v, m): ((String, u32), _) = kind.open(&bytes, 7).unwrap();
        assert_eq!(v, value);
        assert_eq!(m, meta::<(String, u32)>());
    }
}

#[test]
fn another_type_another_key_or_codec_is_rejected_before_decoding() {
    let bytes = seal::<MessagePack, _>(&5u64, &meta::<u64>()).unwrap();
    assert_eq!(
        open::<MessagePack, u32>(&bytes, 7).unwrap_err(),
        EnvelopeError::Type
    );
    assert_eq!(
        open::<MessagePack, u64>(&bytes, 8).unwrap_err(),
        EnvelopeError::Key
    );
    assert!(matches!(
        open::<Json, u64>(&bytes, 7),
        Err(EnvelopeError::Codec {
            found: 2,
            expected: 3
        })
    ));
    let mut old = bytes.clone();
    old[2] = 1; // written by a bincode build
    assert_eq!(
        open::<MessagePack, u64>(&old, 7).unwrap_err(),
        EnvelopeError::Format(1)
    );
}

#[test]
fn truncated_and_foreign_bytes_are_errors_not_panics() {
    let bytes =
        seal::<MessagePack, _>(&"a long enough string".to_string(), &meta::<String>()).unwrap();
    for cut in 0..bytes.len() {
        assert!(
            open::<MessagePack, String>(&bytes[..cut], 7).is_err(),
            "cut {cut}"
        );
    }
    assert_eq!(
        open::<MessagePack, String>(b"GARBAGE GARBAGE GARBAGE GARBAGE GARBAGE", 7).unwrap_err(),
        EnvelopeError::BadMagic
    );
}

#[test]
fn trailing_bytes_mean_another_shape() {
    let bytes = forged::<MessagePack, u8>(&[1, 2]);
    assert_eq!(
        open::<MessagePack, u8>(&bytes, 7).unwrap_err(),
        EnvelopeError::Payload(CodecError::Trailing(1))
    );
    let bytes = forged::<Json, u8>(b"1 2");
    assert!(matches!(
        open::<Json, u8>(&bytes, 7),
        Err(EnvelopeError::Payload(CodecError::Trailing(_)))
    ));
}

#[test]
fn a_huge_length_prefix_fails_without_allocating_it() {
    // A str32 claiming 4 GiB, then nothing; an array32 of u64 the same.
    let bytes = forged::<MessagePack, String>(&[0xdb, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        open::<MessagePack, String>(&bytes, 7),
        Err(EnvelopeError::Payload(CodecError::Decode(_)))
    ));
    let bytes = forged::<MessagePack, Vec<u64>>(&[0xdd, 0xff, 0xff, 0xff, 0xff, 1]);
    assert!(open::<MessagePack, Vec<u64>>(&bytes, 7).is_err());
}

/// The crafted payloads of the issue: 20 kB and 1 MiB of nesting under a
/// recursive type, in each shape the formats do not count themselves.
fn deep_payloads(len: usize) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
    vec![
        // Node(Node(...)): a one-entry map {1: ...} per level in MessagePack.
        (
            "enum",
            [0x81, 0x01].repeat(len / 2),
            b"{\"Node\":".repeat(len / 8),
        ),
        // One non-nil byte that an Option never consumes.
        ("option", vec![0x01; len], b"1".repeat(len)),
        // Arrays, which the formats count (rmp up to 1024, JSON 128).
        ("array", [0x91].repeat(len), b"[".repeat(len)),
    ]
}

#[test]
fn crafted_deep_nesting_is_a_decode_error_not_a_stack_overflow() {
    for len in [20_000, 1 << 20] {
        for (shape, msgpack, json) in deep_payloads(len) {
            let m = forged::<MessagePack, Tree>(&msgpack);
            assert!(
                matches!(
                    open::<MessagePack, Tree>(&m, 7),
                    Err(EnvelopeError::Payload(CodecError::Decode(_)))
                ),
                "{shape} {len}"
            );
            let m = forged::<MessagePack, List>(&msgpack);
            assert!(open::<MessagePack, List>(&m, 7).is_err(), "{shape} {len}");
            let m = forged::<MessagePack, Nested>(&msgpack);
            assert!(open::<MessagePack, Nested>(&m, 7).is_err(), "{shape} {len}");
            let j = forged::<Json, Tree>(&json);
            assert!(open::<Json, Tree>(&j, 7).is_err(), "{shape} {len}");
            let j = forged::<Json, List>(&json);
            assert!(open::<Json, List>(&j, 7).is_err(), "{shape} {len}");
        }
    }
}

#[test]
fn values_nested_within_the_limit_still_round_trip() {
    let mut tree = Tree::Leaf(1);
    let mut nested = Nested { children: vec![] };
    for _ in 0..100 {
        tree = Tree::Node(Box::new(tree));
    }
    for _ in 0..40 {
        // Two levels each: the struct and its Vec.
        nested = Nested {
            children: vec![nested],
        };
    }
    for kind in [CodecKind::MessagePack, CodecKind::Json] {
        let bytes = kind.seal(&tree, &meta::<Tree>(), usize::MAX).unwrap();
        assert_eq!(kind.open::<Tree>(&bytes, 7).unwrap().0, tree);
        let bytes = kind.seal(&nested, &meta::<Nested>(), usize::MAX).unwrap();
        assert_eq!(kind.open::<Nested>(&bytes, 7).unwrap().0, nested);
    }
}

#[test]
fn encoding_stops_at_the_limit() {
    let big = vec![7u8; 100_000];
    for kind in [CodecKind::MessagePack, CodecKind::Json] {
        assert_eq!(
            kind.seal(&big, &meta::<Vec<u8>>(), 4096).unwrap_err(),
            CodecError::TooLarge { limit: 4096 }
        );
        let fits = kind.seal(&big[..100], &meta::<&[u8]>(), 4096).unwrap();
        assert!(fits.len() <= 4096);
        assert!(fits.capacity() <= 4096, "{}", fits.capacity());
    }
    assert_eq!(
        seal_within::<MessagePack, _>(&1u8, &meta::<u8>(), HEADER_LEN + 1).map(|b| b.len()),
        Ok(HEADER_LEN + 1)
    );
    assert!(seal_within::<MessagePack, _>(&1000u16, &meta::<u16>(), HEADER_LEN + 1).is_err());
}

#[test]
fn codec_names_parse() {
    assert_eq!("msgpack".parse(), Ok(CodecKind::MessagePack));
    assert_eq!(" JSON ".parse(), Ok(CodecKind::Json));
    assert!("bincode"
        .parse::<CodecKind>()
        .unwrap_err()
        .contains("bincode"));
    assert_eq!(CodecKind::Json.as_str(), "json");
}
