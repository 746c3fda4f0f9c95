//! Keys: escaping of rendered argument values, template rendering and the
//! stable 128-bit hash of a canonical argument encoding.
//!
//! Every cached call has two keys. The *local* key is the exact arguments
//! (an owned tuple), so two different argument lists can never share a local
//! entry. The *stable* key is a string, identical across processes, builds
//! and platforms, used by shared tiers and by prefix invalidation:
//!
//! ```text
//! {namespace}:{rendered template}            with a `key = "..."` template
//! {namespace}:{32 hex digits}                without: xxh3-128 of the argument signature and the arguments' encoding
//! ```
//!
//! `namespace` is the function's `key_prefix`, or `module::path::fn_name`.
//! Values rendered into a template are escaped (see [`escape`]) so that a
//! value holding `:` or `*` cannot forge another key or widen a prefix.
//!
//! # The canonical encoding
//!
//! Hashed arguments are encoded with [postcard](https://postcard.jamesmunns.com/wire-format)
//! 1.x: a documented wire format frozen for all of 1.x, with integers as
//! LEB128 varints (signed ones zigzagged first), lengths as varints, `Option`
//! and enum variants as a varint tag, floats as their little-endian bytes.
//! Nothing depends on the platform's `usize` width, byte order or the
//! compiler, so every process of a fleet computes the same key. postcard only
//! feeds the hashers here, through a serializer flavor that writes into a
//! per-thread array or straight into the streaming hashers: hashing a key
//! never allocates. A map or sequence of unknown length, or a `Serialize`
//! impl that fails, is a [`KeyError`] (counted as a shared-tier encode
//! error: the call runs with the in-process tier only); a `HashMap`
//! argument hashes in its iteration order, so use a `BTreeMap` for a stable key.
//!
//! # Keys of different argument types never alias
//!
//! `#[cached]` writes down the function's *argument signature*: the key's
//! argument types as written in the source (`(u64)`, `(Self,u32)`,
//! `(Vec<String>,Option<u8>)`; for `&T` the referent `T`). Without a
//! template the signature is hashed together with the arguments'
//! encoding, so `f(x: u64)` and `g(x: i64)` under one `key_prefix`, or
//! `(1u8, 2u8)` and `([1u8, 2u8],)`, get different keys, and changing an
//! argument's type changes the key. With a template the key stays the
//! readable rendered text, and the signature (of the placeholders'
//! argument types) goes into the key check stored in every shared
//! envelope: a function with other argument types under the same rendered
//! key reads a counted miss (and replaces the entry), never the other's value.
//!
//! The signature comes from the macro's view of the source, not from the
//! values: an encoding carries no type for an empty `Vec` or a `None`, and
//! the source does; it is a constant (nothing to compute per call), and it
//! is the same on every build, compiler and platform, unlike
//! `std::any::type_name` or `TypeId`. What it cannot see: a type alias's
//! target, or a change inside a struct's definition. The latter mostly
//! changes the encoding, hence the key, anyway; for a change that keeps the
//! encoding but not the meaning, change `key_prefix` or use `versioned`.

use std::cell::RefCell;
use std::fmt::{self, Display, Write as _};

use postcard::ser_flavors::Flavor;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

mod type_key;
pub use type_key::{instance_namespace, CacheKeyType};

/// Why a stable key could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The arguments could not be encoded canonically (for example a
    /// `Serialize` impl that streams a sequence of unknown length).
    #[error("cannot encode cache key arguments canonically: {0}")]
    Encode(String),
}

/// Whether `c` is escaped when an argument value is rendered into a key.
///
/// `%` (the escape character itself), `:` (the separator), the glob
/// characters of Redis `SCAN MATCH` (`*`, `?`, `[`, `]`, `\`), the template
/// braces and control characters are written as `%XX` (per UTF-8 byte).
#[inline]
fn needs_escape(c: char) -> bool {
    matches!(c, '%' | ':' | '*' | '?' | '[' | ']' | '\\' | '{' | '}') || c.is_control()
}

/// Appends `value` to `out`, escaping separator, glob and control characters.
pub fn escape_into(out: &mut String, value: &str) {
    let mut rest = value;
    while let Some(pos) = rest.find(needs_escape) {
        out.push_str(&rest[..pos]);
        let c = rest[pos..]
            .chars()
            .next()
            .expect("find returned a char boundary");
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
        rest = &rest[pos + c.len_utf8()..];
    }
    out.push_str(rest);
}

/// `value` with separator, glob and control characters escaped, as it appears
/// inside a rendered key.
///
/// Use it to build a `prefix` for [`invalidate_prefix`](crate::invalidate_prefix)
/// from a runtime value:
///
/// ```
/// assert_eq!(layercache_runtime::key::escape("a:b*"), "a%3Ab%2A");
/// assert_eq!(layercache_runtime::key::escape("plain café"), "plain café");
/// ```
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    escape_into(&mut out, value);
    out
}

/// A `fmt::Write` adapter that escapes everything written through it.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

/// Builds a rendered key from a template, one piece at a time.
///
/// Generated code for `key = "{query}:page:{page}"` calls
/// `literal`/`value` in template order; [`KeyBuilder::finish`] returns the
/// rendered string.
#[derive(Debug, Default)]
pub struct KeyBuilder {
    buf: String,
}

impl KeyBuilder {
    /// An empty key.
    #[inline]
    pub fn new() -> KeyBuilder {
        KeyBuilder {
            buf: String::with_capacity(32),
        }
    }

    /// Appends template text verbatim.
    #[inline]
    pub fn literal(&mut self, text: &str) -> &mut Self {
        self.buf.push_str(text);
        self
    }

    /// Appends an argument value's `Display` rendering, escaped.
    #[inline]
    pub fn value<T: Display + ?Sized>(&mut self, value: &T) -> &mut Self {
        // Display impls only fail when the writer fails, and ours never does.
        let _ = write!(Escaping(&mut self.buf), "{value}");
        self
    }

    /// The rendered key.
    #[inline]
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.buf)
    }
}

/// Seed of the key check: a second hash of the same canonical bytes,
/// independent of the 128-bit key hash, stored in shared-tier envelopes to
/// detect a key-hash collision.
const CHECK_SEED: u64 = 0x6c61_7965_7263_6163; // "layercac"

/// Encodings up to this many bytes are hashed in one shot from a
/// per-thread buffer (for a few bytes, setting up the two streaming hashers
/// costs more than the hashing). A longer one streams into the hashers in
/// chunks of this size, so the many small writes of a long sequence stay
/// plain copies.
const ONE_SHOT_MAX: usize = 1024;

/// The key hash and the key check of an encoding too long for one shot.
struct Hashers {
    key: Xxh3,
    check: Xxh3,
}

impl Hashers {
    fn new() -> Hashers {
        Hashers {
            key: Xxh3::new(),
            check: Xxh3::with_seed(CHECK_SEED),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.key.update(bytes);
        self.check.update(bytes);
    }
}

/// A postcard [`Flavor`] that hashes the encoding as it is written, without
/// allocating: bytes gather in `buf` (a per-thread or stack array); when it
/// is full they go to the streaming hashers in `stream`, set up on the
/// first overflow. xxh3 hashes a stream and its one-shot concatenation
/// alike, so where the chunks are cut never changes a hash.
struct HashSink<'a> {
    buf: &'a mut [u8],
    len: usize,
    /// Behind a reference: the sink moves into postcard by value, and two
    /// streaming states are about a kilobyte that a short key never touches.
    stream: &'a mut Option<Hashers>,
}

impl HashSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(free) => {
                free.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow(bytes),
        }
    }

    #[cold]
    fn overflow(&mut self, bytes: &[u8]) {
        let stream = self.stream.get_or_insert_with(Hashers::new);
        stream.update(&self.buf[..self.len]);
        self.len = 0;
        if bytes.len() <= self.buf.len() {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        } else {
            stream.update(bytes);
        }
    }
}

impl Flavor for HashSink<'_> {
    type Output = (u128, u64);

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.put(bytes);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.put(&[byte]);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<(u128, u64)> {
        let rest = &self.buf[..self.len];
        Ok(match self.stream {
            Some(stream) => {
                stream.update(rest);
                (stream.key.digest128(), stream.check.digest())
            }
            None => (
                xxhash_rust::xxh3::xxh3_128(rest),
                xxhash_rust::xxh3::xxh3_64_with_seed(rest, CHECK_SEED),
            ),
        })
    }
}

/// The argument signature's prefix of the hashed bytes: its length (so no
/// signature is a prefix of another's bytes), then its text. Empty for
/// untyped keys ([`render_hashed`], [`stable_hash`]).
fn signature_prefix(signature: &str, mut put: impl FnMut(&[u8])) {
    if signature.is_empty() {
        return;
    }
    let len = u32::try_from(signature.len()).unwrap_or(u32::MAX);
    put(&len.to_le_bytes());
    put(signature.as_bytes());
}

/// The key hash and the key check of `signature`'s prefix followed by the
/// postcard encoding of `value`.
fn hash_both<T: Serialize + ?Sized>(signature: &str, value: &T) -> Result<(u128, u64), KeyError> {
    thread_local! {
        // An array, not a `Vec`: even a thread's first key allocates nothing.
        static BUF: RefCell<[u8; ONE_SHOT_MAX]> = const { RefCell::new([0; ONE_SHOT_MAX]) };
    }
    fn encode<T: Serialize + ?Sized>(
        signature: &str,
        value: &T,
        buf: &mut [u8],
    ) -> Result<(u128, u64), KeyError> {
        let mut stream = None;
        let mut sink = HashSink {
            buf,
            len: 0,
            stream: &mut stream,
        };
        signature_prefix(signature, |bytes| sink.put(bytes));
        postcard::serialize_with_flavor(value, sink).map_err(|e| KeyError::Encode(e.to_string()))
    }
    let buffered = BUF.try_with(|buf| {
        let mut buf = buf.try_borrow_mut().ok()?;
        Some(encode(signature, value, &mut *buf))
    });
    match buffered {
        Ok(Some(result)) => result,
        // A `Serialize` impl that hashes a key itself, or a thread-local
        // destructor: a smaller buffer on the stack.
        _ => encode(signature, value, &mut [0; 128]),
    }
}

/// The stable 128-bit hash of `value`: xxh3-128 of its postcard encoding
/// (see [the canonical encoding](self#the-canonical-encoding)), identical
/// across processes, builds and platforms.
///
/// ```
/// use layercache_runtime::key::stable_hash;
/// assert_eq!(stable_hash(&(1u64, "a")).unwrap(), stable_hash(&(1u64, "a")).unwrap());
/// assert_ne!(stable_hash(&(1u64, 2u64)), stable_hash(&(2u64, 1u64)));
/// ```
pub fn stable_hash<T: Serialize + ?Sized>(value: &T) -> Result<u128, KeyError> {
    hash_both("", value).map(|(key, _)| key)
}

/// Appends the stable key suffix of hashed (template-less) arguments (32
/// lower-case hex digits) and returns the key check; for keys without an
/// argument signature (see [`render_hashed_typed`]).
pub fn render_hashed<K: Serialize>(key: &K, out: &mut String) -> Result<u64, KeyError> {
    render_hashed_typed(key, out, "")
}

/// [`render_hashed`] for a function whose argument signature is
/// `signature` (see the [module docs](self)): the hash covers the signature
/// and the arguments, so equal encodings of different argument types differ.
///
/// ```
/// use layercache_runtime::key::{render_hashed_typed, stable_hash};
/// // Both encode as the byte 0x02 (1i64 as a zigzag varint).
/// assert_eq!(stable_hash(&(2u64,)), stable_hash(&(1i64,)));
/// let (mut unsigned, mut signed) = (String::new(), String::new());
/// render_hashed_typed(&(2u64,), &mut unsigned, "(u64)").unwrap();
/// render_hashed_typed(&(1i64,), &mut signed, "(i64)").unwrap();
/// assert_ne!(unsigned, signed);
/// ```
pub fn render_hashed_typed<K: Serialize>(
    key: &K,
    out: &mut String,
    signature: &str,
) -> Result<u64, KeyError> {
    let (hash, check) = hash_both(signature, key)?;
    // `{hash:032x}` without the formatting machinery (it is on every shared lookup).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = HEX[((hash >> (124 - 4 * i)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"));
    Ok(check)
}

/// Appends the stable key suffix of templated arguments (the rendered
/// template itself, already escaped when it was built) and returns the key check.
#[allow(clippy::ptr_arg)] // must match `RenderKey<String>`, i.e. `fn(&String, ..)`
pub fn render_template(key: &String, out: &mut String) -> Result<u64, KeyError> {
    render_template_typed(key, out, "")
}

/// [`render_template`] for a template whose placeholders have the
/// argument signature `signature`: the key stays the rendered text, the
/// key check covers the signature too (see the [module docs](self)).
///
/// ```
/// use layercache_runtime::key::render_template_typed;
/// let (mut a, mut b) = (String::new(), String::new());
/// let check_u64 = render_template_typed(&"1".to_string(), &mut a, "(u64)").unwrap();
/// let check_i64 = render_template_typed(&"1".to_string(), &mut b, "(i64)").unwrap();
/// assert_eq!(a, b, "the same readable key");
/// assert_ne!(check_u64, check_i64, "whose envelopes tell the two apart");
/// ```
#[allow(clippy::ptr_arg)] // as `render_template`
pub fn render_template_typed(
    key: &String,
    out: &mut String,
    signature: &str,
) -> Result<u64, KeyError> {
    out.push_str(key);
    if signature.is_empty() {
        return Ok(xxhash_rust::xxh3::xxh3_64_with_seed(
            key.as_bytes(),
            CHECK_SEED,
        ));
    }
    let mut check = xxhash_rust::xxh3::Xxh3::with_seed(CHECK_SEED);
    signature_prefix(signature, |b| check.update(b));
    check.update(key.as_bytes());
    Ok(check.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_injective_on_separators_and_the_escape_character() {
        // "a:b" and "a%3Ab" must not render alike.
        assert_eq!(escape("a:b"), "a%3Ab");
        assert_eq!(escape("a%3Ab"), "a%253Ab");
        assert_ne!(escape("a:b"), escape("a%3Ab"));
    }

    #[test]
    fn escaping_covers_glob_characters_and_control_characters() {
        assert_eq!(escape("*?[]\\{}"), "%2A%3F%5B%5D%5C%7B%7D");
        assert_eq!(escape("line\nbreak"), "line%0Abreak");
        assert_eq!(escape("ünïcode 空格"), "ünïcode 空格");
    }

    #[test]
    fn key_builder_escapes_values_but_not_literals() {
        let mut b = KeyBuilder::new();
        b.literal("search:")
            .value("rust:lang*")
            .literal(":page:")
            .value(&2u32);
        assert_eq!(b.finish(), "search:rust%3Alang%2A:page:2");
    }

    #[test]
    fn stable_hash_is_pinned_across_builds() {
        // Pinned: a change here changes every stable key (and would orphan shared entries).
        let mut out = String::new();
        render_hashed(&(42u64,), &mut out).unwrap();
        assert_eq!(out.len(), 32);
        assert_eq!(out, format!("{:032x}", stable_hash(&(42u64,)).unwrap()));
        assert_eq!(out, PINNED_42);
    }

    // xxh3-128 of [0x2a], the postcard encoding of (42u64,) (bincode's
    // too: both write an integer below 128 as one byte, so this pin held
    // across the switch; `the_encoding_is_postcard` pins where they differ).
    const PINNED_42: &str = "14c9ae9594c463c479d03016b7aeed0d";

    #[test]
    fn a_typed_hash_is_pinned_across_builds() {
        // Pinned: what `#[cached] fn f(x: u64)` stores `f(42)` under.
        let mut out = String::new();
        render_hashed_typed(&(42u64,), &mut out, "(u64)").unwrap();
        assert_eq!(out, PINNED_42_U64);
    }

    // xxh3-128 of 05 00 00 00 "(u64)" 2a.
    const PINNED_42_U64: &str = "715a9215e0d00cc0c3a243c62855a70a";

    #[test]
    fn equal_encodings_of_different_argument_types_get_different_keys() {
        let key = |sig: &str, f: &dyn Fn(&mut String) -> Result<u64, KeyError>| {
            let mut out = String::new();
            let check = f(&mut out).unwrap();
            (sig.to_string(), out, check)
        };
        // postcard encodes these alike (1i64 is the zigzag varint 2):
        // the signature tells them apart.
        assert_eq!(
            stable_hash(&(2u64,)),
            stable_hash(&(1i64,)),
            "untyped, they alias"
        );
        let u = key("(u64)", &|o| render_hashed_typed(&(2u64,), o, "(u64)"));
        let i = key("(i64)", &|o| render_hashed_typed(&(1i64,), o, "(i64)"));
        let two = key("(u8,u8)", &|o| {
            render_hashed_typed(&(1u8, 2u8), o, "(u8,u8)")
        });
        let arr = key("([u8; 2])", &|o| {
            render_hashed_typed(&([1u8, 2u8],), o, "([u8;2])")
        });
        assert_eq!(
            stable_hash(&(1u8, 2u8)),
            stable_hash(&([1u8, 2u8],)),
            "untyped, they alias"
        );
        assert_ne!(u.1, i.1);
        assert_ne!(two.1, arr.1);
        assert_ne!((u.2, two.2), (i.2, arr.2), "and so do their key checks");
        // A signature is never a prefix confusion of the encoding.
        let a = key("", &|o| render_hashed_typed(&("b".to_string(),), o, "(a)"));
        let b = key("", &|o| render_hashed_typed(&("".to_string(),), o, "(ab)"));
        assert_ne!(a.1, b.1);
    }

    /// `xxh3_128` and the key check of `bytes`, computed without postcard.
    fn hashes_of(bytes: &[u8]) -> (u128, u64) {
        (
            xxhash_rust::xxh3::xxh3_128(bytes),
            xxhash_rust::xxh3::xxh3_64_with_seed(bytes, CHECK_SEED),
        )
    }

    #[test]
    fn the_encoding_is_postcard_leb128_varints_and_length_prefixed_text() {
        // Bytes written by hand from postcard's wire-format spec, where bincode 2 differs:
        // 300u64 = LEB128 ac 02 (bincode: fb 2c 01); 'é' = length 2 + UTF-8
        // (bincode: no length); -1i64 = zigzag 1; Some(70000u32) = tag 1 + f0 a2 04.
        let args = (300u64, 'é', -1i64, Some(70_000u32), "ab");
        let bytes = [
            0xac, 0x02, 0x02, 0xc3, 0xa9, 0x01, 0x01, 0xf0, 0xa2, 0x04, 0x02, b'a', b'b',
        ];
        assert_eq!(hash_both("", &args).unwrap(), hashes_of(&bytes));
        let signature = "(u64,char,i64,Option<u32>,&str)";
        let mut prefixed = (signature.len() as u32).to_le_bytes().to_vec();
        prefixed.extend_from_slice(signature.as_bytes());
        prefixed.extend_from_slice(&bytes);
        let mut out = String::new();
        let check = render_hashed_typed(&args, &mut out, signature).unwrap();
        assert_eq!(
            (out.as_str(), check),
            (PINNED_MIXED, hashes_of(&prefixed).1),
            "pinned: a change here changes every stable key"
        );
        assert_eq!(out, format!("{:032x}", hashes_of(&prefixed).0));
    }

    const PINNED_MIXED: &str = "4055ab9f60988356c9cf1907a2405b39";

    #[test]
    fn an_encoding_longer_than_the_one_shot_buffer_hashes_as_its_bytes() {
        // Two strings of 3000 bytes: the first fits the buffer, the second
        // spills it into the streaming hashers mid-encoding.
        let args = ("a".repeat(3000), "b".repeat(3000));
        let mut bytes = vec![0xb8, 0x17]; // 3000 as LEB128
        bytes.extend_from_slice(args.0.as_bytes());
        bytes.extend_from_slice(&[0xb8, 0x17]);
        bytes.extend_from_slice(args.1.as_bytes());
        assert!(bytes.len() > ONE_SHOT_MAX);
        assert_eq!(hash_both("", &args).unwrap(), hashes_of(&bytes));
        // Many one-byte writes, streamed in buffer-sized chunks.
        let many: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut bytes = vec![0xb8, 0x17];
        bytes.extend_from_slice(&many);
        assert_eq!(hash_both("", &many).unwrap(), hashes_of(&bytes));
        // One write longer than the buffer, with nothing buffered before it.
        let long = "c".repeat(2 * ONE_SHOT_MAX);
        let mut bytes = vec![0x80, 0x10]; // 2048 as LEB128
        bytes.extend_from_slice(long.as_bytes());
        assert_eq!(hash_both("", &long).unwrap(), hashes_of(&bytes));
    }

    /// Hashes `(7u8,)` while it is itself being hashed, then writes that hash.
    struct HashesInside;

    impl Serialize for HashesInside {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let inner = stable_hash(&(7u8,)).map_err(serde::ser::Error::custom)?;
            s.serialize_u128(inner)
        }
    }

    #[test]
    fn a_key_hashed_while_another_is_being_encoded_gets_the_same_hash() {
        let inner = hashes_of(&[7]).0;
        assert_eq!(stable_hash(&(7u8,)).unwrap(), inner);
        let mut leb = Vec::new();
        let mut n = inner;
        while n >= 0x80 {
            leb.push((n as u8) | 0x80);
            n >>= 7;
        }
        leb.push(n as u8);
        assert_eq!(hash_both("", &(HashesInside,)).unwrap(), hashes_of(&leb));
    }

    /// A sequence that does not tell its length up front.
    struct UnknownLength;

    impl Serialize for UnknownLength {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq as _;
            let mut seq = s.serialize_seq(None)?;
            seq.serialize_element(&1u8)?;
            seq.end()
        }
    }

    #[test]
    fn arguments_without_a_canonical_encoding_are_a_key_error() {
        let err = stable_hash(&(UnknownLength,)).unwrap_err();
        assert!(matches!(err, KeyError::Encode(_)), "{err}");
        // The thread's buffer is free again for the next key.
        assert_eq!(stable_hash(&(42u64,)).unwrap(), hashes_of(&[0x2a]).0);
    }
}
