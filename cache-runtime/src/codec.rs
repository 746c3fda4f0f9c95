//! What the shared tier stores: a value encoded by a [`Codec`] inside an
//! envelope that lets every reader verify it before trusting it.
//!
//! ```text
//! offset size
//!      0    2  magic  b"LC"
//!      2    1  envelope format version (1)
//!      3    1  codec id (1 = bincode 2, standard config)
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

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Serializes cached values for the shared tier.
///
/// The codec is chosen at compile time; its [`Codec::ID`] is written into
/// every envelope, so bytes written by another codec are a miss, never a
/// mis-decoded value.
pub trait Codec: Send + Sync + 'static {
    /// The id stored in the envelope. 1 is [`Bincode`]; pick another for your own.
    const ID: u8;
    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Decodes a whole `bytes` slice as a `T`. Must not allocate far more
    /// than `bytes.len()` whatever the bytes claim, and must fail when
    /// bytes are left over.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
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
}

/// serde + bincode 2 with the standard configuration (variable-length
/// integers), the default codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

/// Runs `$body` with `$cfg` bound to a bincode configuration whose decode
/// limit is the smallest of 4 KiB, 16 KiB, … 1 GiB that is at least 8 times
/// `$len`. bincode charges a claim against the limit *before* it allocates a
/// container, and charges in-memory sizes (up to 8 bytes per varint byte),
/// so a forged length prefix can make it allocate at most 32 times the
/// payload (4 KiB at least) before failing.
macro_rules! with_limit_for {
    ($len:expr, |$cfg:ident| $body:expr) => {{
        let need = ($len as u64).saturating_mul(8);
        macro_rules! arm {
            ($bits:literal) => {{
                let $cfg = bincode::config::standard().with_limit::<{ 1usize << $bits }>();
                $body
            }};
        }
        if need <= 1 << 12 {
            arm!(12)
        } else if need <= 1 << 14 {
            arm!(14)
        } else if need <= 1 << 16 {
            arm!(16)
        } else if need <= 1 << 18 {
            arm!(18)
        } else if need <= 1 << 20 {
            arm!(20)
        } else if need <= 1 << 22 {
            arm!(22)
        } else if need <= 1 << 24 {
            arm!(24)
        } else if need <= 1 << 26 {
            arm!(26)
        } else if need <= 1 << 28 {
            arm!(28)
        } else {
            arm!(30)
        }
    }};
}

impl Codec for Bincode {
    const ID: u8 = 1;

    fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(drop)
            .map_err(|e| CodecError::Encode(e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let (value, used) = with_limit_for!(bytes.len(), |cfg| {
            bincode::serde::decode_from_slice::<T, _>(bytes, cfg)
        })
        .map_err(|e| CodecError::Decode(e.to_string()))?;
        match bytes.len() - used {
            0 => Ok(value),
            left => Err(CodecError::Trailing(left)),
        }
    }
}

const MAGIC: [u8; 2] = *b"LC";
/// The envelope layout version written by this build.
pub const ENVELOPE_FORMAT: u8 = 1;
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

/// Encodes `value` in an envelope with codec `C`.
pub fn seal<C: Codec, T: Serialize>(value: &T, meta: &Meta) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(&MAGIC);
    out.push(ENVELOPE_FORMAT);
    out.push(C::ID);
    out.extend_from_slice(&meta.type_fingerprint.to_le_bytes());
    out.extend_from_slice(&meta.key_check.to_le_bytes());
    out.extend_from_slice(&meta.written_at_ms.to_le_bytes());
    out.extend_from_slice(&meta.expires_at_ms.to_le_bytes());
    C::encode(value, &mut out)?;
    Ok(out)
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
mod tests {
    use super::*;

    fn meta<T>() -> Meta {
        Meta {
            type_fingerprint: type_fingerprint::<T>(),
            key_check: 7,
            written_at_ms: 1_000,
            expires_at_ms: 2_000,
        }
    }

    #[test]
    fn a_sealed_value_opens_with_its_header() {
        let bytes =
            seal::<Bincode, _>(&("hello".to_string(), 5u32), &meta::<(String, u32)>()).unwrap();
        assert_eq!(&bytes[..4], b"LC\x01\x01");
        let (v, m): ((String, u32), _) = open::<Bincode, _>(&bytes, 7).unwrap();
        assert_eq!(v, ("hello".to_string(), 5));
        assert_eq!(m, meta::<(String, u32)>());
    }

    #[test]
    fn another_type_another_key_or_codec_is_rejected_before_decoding() {
        let bytes = seal::<Bincode, _>(&5u64, &meta::<u64>()).unwrap();
        assert_eq!(
            open::<Bincode, u32>(&bytes, 7).unwrap_err(),
            EnvelopeError::Type
        );
        assert_eq!(
            open::<Bincode, u64>(&bytes, 8).unwrap_err(),
            EnvelopeError::Key
        );
        let mut other = bytes.clone();
        other[3] = 9;
        assert!(matches!(
            open::<Bincode, u64>(&other, 7),
            Err(EnvelopeError::Codec { found: 9, .. })
        ));
        other[2] = 2;
        assert_eq!(
            open::<Bincode, u64>(&other, 7).unwrap_err(),
            EnvelopeError::Format(2)
        );
    }

    #[test]
    fn truncated_and_foreign_bytes_are_errors_not_panics() {
        let bytes =
            seal::<Bincode, _>(&"a long enough string".to_string(), &meta::<String>()).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                open::<Bincode, String>(&bytes[..cut], 7).is_err(),
                "cut {cut}"
            );
        }
        assert_eq!(
            open::<Bincode, String>(b"GARBAGE GARBAGE GARBAGE GARBAGE GARBAGE", 7).unwrap_err(),
            EnvelopeError::BadMagic
        );
    }

    #[test]
    fn trailing_bytes_mean_another_shape() {
        let mut bytes = seal::<Bincode, _>(&(1u8, 2u8), &meta::<u8>()).unwrap();
        bytes.truncate(HEADER_LEN + 2);
        assert_eq!(
            open::<Bincode, u8>(&bytes, 7).unwrap_err(),
            EnvelopeError::Payload(CodecError::Trailing(1))
        );
    }

    #[test]
    fn a_huge_length_prefix_fails_without_allocating_it() {
        // A String claiming u64::MAX / 2 bytes, then nothing.
        let mut bytes = seal::<Bincode, _>(&String::new(), &meta::<String>()).unwrap();
        bytes.truncate(HEADER_LEN);
        bytes.push(253); // bincode varint marker: a u64 follows
        bytes.extend_from_slice(&(u64::MAX / 2).to_le_bytes());
        let err = open::<Bincode, String>(&bytes, 7).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Payload(CodecError::Decode(_))),
            "{err:?}"
        );
        // Same for a Vec of wide elements.
        let mut bytes = seal::<Bincode, _>(&Vec::<u64>::new(), &meta::<Vec<u64>>()).unwrap();
        bytes.truncate(HEADER_LEN);
        bytes.push(253);
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(open::<Bincode, Vec<u64>>(&bytes, 7).is_err());
    }
}
