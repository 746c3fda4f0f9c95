//! What the shared tier stores: a value encoded by a [`Codec`] inside an
//! envelope that lets every reader verify it before trusting it.
//!
//! ```text
//! offset size
//!      0    2  magic  b"LC"
//!      2    1  envelope format version (2; 1 was bincode, now a miss)
//!      3    1  codec id (2 = MessagePack, 3 = JSON)
//!      4    8  fingerprint of the value type         (u64, little endian)
//!     12    8  key check: a second, independent hash of the key
//!     20    8  written at, Unix milliseconds
//!     28    8  expires at, Unix milliseconds (0 = never)
//!     36    …  payload: the codec's encoding of the value
//! ```
//!
//! A reader rejects the bytes (a *corrupt* miss, counted, and the key is
//! overwritten by the next write-back) when any header field is off, when
//! the payload does not decode, or when decoding does not consume the whole
//! payload. The key check catches a collision of the 128-bit argument hash
//! (or an envelope copied under another key): it is a 64-bit hash of the
//! same canonical bytes with another seed, so a wrong value needs both to
//! collide at once.
//!
//! # No bytes can crash a reader
//!
//! Anyone who can write to the shared tier can put any bytes under a key.
//! Decoding is bounded whatever they are:
//!
//! - **depth**: every level of a value (struct, `Option`, newtype, enum
//!   variant, sequence) counts, and a value deeper than
//!   [`MAX_DEPTH`] levels is a corrupt miss, never a stack overflow, for
//!   every codec (the guard sits between serde and the format);
//! - **allocation**: sequences and maps never pre-allocate from a length
//!   prefix, strings and byte strings are checked against the bytes left,
//!   so a decode allocates in proportion to the bytes it actually read.
//!
//! # Choosing a codec
//!
//! [`CodecKind::MessagePack`] (rmp-serde, compact, self-describing) is the
//! default; [`CodecKind::Json`] stores values a person can read with
//! `redis-cli`. Choose one per configuration with
//! [`ConfigBuilder::codec`](crate::ConfigBuilder::codec) or `CACHE_CODEC`
//! (`msgpack` | `json`). A value written by another codec is a miss, never
//! a mis-decoded value. Your own [`Codec`] works with [`seal_within`] and
//! [`open`] directly.
//!
//! # Size limits while encoding
//!
//! [`seal_within`] encodes through a writer that stops at the limit, so a
//! 64 MiB value against the 1 MiB default costs about 1 MiB and the time
//! to encode 1 MiB before it is refused as [`CodecError::TooLarge`].

mod guard;
mod limit;

pub use guard::MAX_DEPTH;

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::Write;

/// Serializes cached values for the shared tier.
///
/// Its [`Codec::ID`] is written into every envelope, so bytes written by
/// another codec are a miss, never a mis-decoded value.
///
/// ```
/// use layercache_runtime::codec::{self, Codec, MessagePack, Meta};
///
/// let meta = Meta {
///     type_fingerprint: codec::type_fingerprint::<Vec<u32>>(),
///     key_check: 7,
///     written_at_ms: 0,
///     expires_at_ms: 0,
/// };
/// let bytes = codec::seal_within::<MessagePack, _>(&vec![1u32, 2], &meta, 1024).unwrap();
/// let (value, _) = codec::open::<MessagePack, Vec<u32>>(&bytes, 7).unwrap();
/// assert_eq!(value, [1, 2]);
/// ```
pub trait Codec: Send + Sync + 'static {
    /// The id stored in the envelope: 2 is [`MessagePack`], 3 is [`Json`];
    /// pick one above 127 for your own.
    const ID: u8;
    /// Writes the encoding of `value` to `out`, stopping at its first error.
    fn encode<T: Serialize + ?Sized, W: Write>(value: &T, out: W) -> Result<(), CodecError>;
    /// Decodes a whole `bytes` slice as a `T`. Must be bounded in depth and
    /// allocation whatever the bytes claim (wrap the format's deserializer
    /// with [`bounded`]), and must fail when bytes are left over.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// Decodes a `T` from a format's deserializer with the depth and
/// pre-allocation bounds of this module (see the module docs): what a
/// [`Codec::decode`] of your own should call.
pub fn bounded<'de, T, D>(de: D) -> Result<T, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    guard::deserialize(de)
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value's `Serialize` impl failed.
    #[error("cannot encode the value: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the type.
    #[error("cannot decode the value: {0}")]
    Decode(String),
    /// The bytes decoded, but not all of them were used: another type's encoding.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    /// The encoding reached the size limit; encoding stopped there.
    #[error("the encoding is over the {limit}-byte limit")]
    TooLarge {
        /// The limit, in bytes of the whole envelope.
        limit: usize,
    },
}

/// serde + MessagePack (rmp-serde, structs as arrays): the default codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

impl Codec for MessagePack {
    const ID: u8 = 2;

    fn encode<T: Serialize + ?Sized, W: Write>(value: &T, mut out: W) -> Result<(), CodecError> {
        rmp_serde::encode::write(&mut out, value).map_err(|e| CodecError::Encode(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        // A reader that copies (bounded by the bytes left) rather than
        // borrows, for `position()` to tell the trailing bytes.
        let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
        de.set_max_depth(MAX_DEPTH as usize);
        let value = bounded(&mut de).map_err(|e| CodecError::Decode(e.to_string()))?;
        match bytes.len() as u64 - de.position() {
            0 => Ok(value),
            left => Err(CodecError::Trailing(left as usize)),
        }
    }
}

/// serde + JSON (serde_json): readable in `redis-cli`, larger and slower
/// than [`MessagePack`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const ID: u8 = 3;

    fn encode<T: Serialize + ?Sized, W: Write>(value: &T, out: W) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::Encode(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = bounded(&mut de).map_err(|e| CodecError::Decode(e.to_string()))?;
        de.end().map_err(|_| {
            let left = bytes.len() - bytes.trim_ascii_end().len();
            CodecError::Trailing(left.max(1))
        })?;
        Ok(value)
    }
}

/// The retired name of the default codec. bincode 2 is unmaintained
/// (RUSTSEC-2025-0141) and has no depth limit, so values moved to
/// MessagePack with envelope format 2; old entries are misses.
#[deprecated(note = "bincode is no longer a value codec; use `MessagePack`")]
pub type Bincode = MessagePack;

/// The built-in codecs, chosen per configuration
/// ([`ConfigBuilder::codec`](crate::ConfigBuilder::codec), `CACHE_CODEC`).
///
/// ```
/// use layercache_runtime::codec::CodecKind;
///
/// assert_eq!("json".parse::<CodecKind>(), Ok(CodecKind::Json));
/// assert_eq!(CodecKind::default(), CodecKind::MessagePack);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecKind {
    /// [`MessagePack`] (`msgpack`), the default.
    #[default]
    MessagePack,
    /// [`Json`] (`json`).
    Json,
}

impl CodecKind {
    /// The name `CACHE_CODEC` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            CodecKind::MessagePack => "msgpack",
            CodecKind::Json => "json",
        }
    }

    /// [`seal_within`] with this codec.
    pub fn seal<T: Serialize + ?Sized>(
        self,
        value: &T,
        meta: &Meta,
        limit: usize,
    ) -> Result<Vec<u8>, CodecError> {
        match self {
            CodecKind::MessagePack => seal_within::<MessagePack, T>(value, meta, limit),
            CodecKind::Json => seal_within::<Json, T>(value, meta, limit),
        }
    }

    /// [`open`] with this codec.
    pub fn open<T: DeserializeOwned>(
        self,
        bytes: &[u8],
        key_check: u64,
    ) -> Result<(T, Meta), EnvelopeError> {
        match self {
            CodecKind::MessagePack => open::<MessagePack, T>(bytes, key_check),
            CodecKind::Json => open::<Json, T>(bytes, key_check),
        }
    }
}

impl std::str::FromStr for CodecKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "msgpack" | "messagepack" => Ok(CodecKind::MessagePack),
            "json" => Ok(CodecKind::Json),
            other => Err(format!("unknown codec {other:?} (msgpack | json)")),
        }
    }
}

const MAGIC: [u8; 2] = *b"LC";
/// The envelope layout version written by this build.
pub const ENVELOPE_FORMAT: u8 = 2;
/// Size of the envelope header in bytes.
pub const HEADER_LEN: usize = 36;

/// What an envelope says about its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// [`type_fingerprint`] of the value's type.
    pub type_fingerprint: u64,
    /// The key check (see the module docs).
    pub key_check: u64,
    /// When the value was written, Unix milliseconds.
    pub written_at_ms: u64,
    /// When it expires, Unix milliseconds; 0 for never.
    pub expires_at_ms: u64,
}

/// Why stored bytes were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Shorter than the header.
    #[error("truncated envelope ({0} bytes)")]
    Truncated(usize),
    /// Not written by layercache.
    #[error("bad magic bytes")]
    BadMagic,
    /// Written by another envelope format version.
    #[error("envelope format {0}, this build reads {ENVELOPE_FORMAT}")]
    Format(u8),
    /// Written by another codec.
    #[error("written by codec {found}, expected {expected}")]
    Codec {
        /// The codec id found.
        found: u8,
        /// The codec id expected.
        expected: u8,
    },
    /// Written for another value type (a changed return type after a deploy).
    #[error("written for another value type")]
    Type,
    /// Written under another key (a hash collision or copied bytes).
    #[error("written for another key")]
    Key,
    /// The payload did not decode.
    #[error(transparent)]
    Payload(#[from] CodecError),
}

/// A stable-within-a-build fingerprint of `T`: a hash of its type name.
///
/// A changed return type after a deploy changes the name (so old bytes are a
/// miss); a struct changed in place keeps its name, and is then caught by
/// the codec failing to decode or by trailing bytes.
pub fn type_fingerprint<T: ?Sized>() -> u64 {
    xxhash_rust::xxh3::xxh3_64(std::any::type_name::<T>().as_bytes())
}

/// Encodes `value` in an envelope with codec `C`, without a size limit.
pub fn seal<C: Codec, T: Serialize + ?Sized>(
    value: &T,
    meta: &Meta,
) -> Result<Vec<u8>, CodecError> {
    seal_within::<C, T>(value, meta, usize::MAX)
}

/// Encodes `value` in an envelope with codec `C`, stopping with
/// [`CodecError::TooLarge`] as soon as the envelope would pass `limit`
/// bytes: memory and time stay bounded by the limit, not by the value.
pub fn seal_within<C: Codec, T: Serialize + ?Sized>(
    value: &T,
    meta: &Meta,
    limit: usize,
) -> Result<Vec<u8>, CodecError> {
    if limit < HEADER_LEN {
        return Err(CodecError::TooLarge { limit });
    }
    let mut out = Vec::with_capacity((HEADER_LEN + 64).min(limit));
    out.extend_from_slice(&MAGIC);
    out.push(ENVELOPE_FORMAT);
    out.push(C::ID);
    out.extend_from_slice(&meta.type_fingerprint.to_le_bytes());
    out.extend_from_slice(&meta.key_check.to_le_bytes());
    out.extend_from_slice(&meta.written_at_ms.to_le_bytes());
    out.extend_from_slice(&meta.expires_at_ms.to_le_bytes());
    let mut writer = limit::Limited::new(&mut out, limit - HEADER_LEN);
    match C::encode(value, &mut writer) {
        Ok(()) => Ok(out),
        Err(_) if writer.overflowed => Err(CodecError::TooLarge { limit }),
        Err(err) => Err(err),
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads the header of `bytes` without decoding the payload.
pub fn read_meta(bytes: &[u8]) -> Result<(u8, Meta), EnvelopeError> {
    if bytes.len() < HEADER_LEN {
        return Err(EnvelopeError::Truncated(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(EnvelopeError::BadMagic);
    }
    if bytes[2] != ENVELOPE_FORMAT {
        return Err(EnvelopeError::Format(bytes[2]));
    }
    Ok((
        bytes[3],
        Meta {
            type_fingerprint: u64_at(bytes, 4),
            key_check: u64_at(bytes, 12),
            written_at_ms: u64_at(bytes, 20),
            expires_at_ms: u64_at(bytes, 28),
        },
    ))
}

/// Verifies `bytes` against the expected type and key, then decodes the value.
pub fn open<C: Codec, T: DeserializeOwned>(
    bytes: &[u8],
    key_check: u64,
) -> Result<(T, Meta), EnvelopeError> {
    let (codec, meta) = read_meta(bytes)?;
    if codec != C::ID {
        return Err(EnvelopeError::Codec {
            found: codec,
            expected: C::ID,
        });
    }
    if meta.type_fingerprint != type_fingerprint::<T>() {
        return Err(EnvelopeError::Type);
    }
    if meta.key_check != key_check {
        return Err(EnvelopeError::Key);
    }
    let value = C::decode(&bytes[HEADER_LEN..])?;
    Ok((value, meta))
}

#[cfg(test)]
mod tests;
