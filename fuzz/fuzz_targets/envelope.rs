//! Any bytes under a shared key: the envelope decoder must answer a value
//! or an error, within its depth and allocation bounds, never crash.
//! Half the inputs get a valid header for the type they are read as, so
//! the fuzzer spends its time in the payload decoders.
#![no_main]

use layercache_runtime::codec::{self, CodecKind, Meta};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Tree {
    Leaf(u8),
    Node(Box<Tree>),
    Pair(Box<Tree>, Box<Tree>),
    Named { left: Option<Box<Tree>>, label: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct List(Option<Box<List>>);

#[derive(Debug, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    tags: Vec<String>,
    scores: std::collections::BTreeMap<String, f64>,
    parent: Option<Box<Profile>>,
}

const KEY_CHECK: u64 = 0x5eed;

/// `payload` behind a valid header for `T` written by `codec`.
fn forged<T>(codec: CodecKind, payload: &[u8]) -> Vec<u8> {
    let meta = Meta {
        type_fingerprint: codec::type_fingerprint::<T>(),
        key_check: KEY_CHECK,
        written_at_ms: 0,
        expires_at_ms: 0,
    };
    let mut bytes = codec.seal(&(), &meta, usize::MAX).expect("a header");
    bytes.truncate(codec::HEADER_LEN);
    bytes.extend_from_slice(payload);
    bytes
}

fn open_all(codec: CodecKind, data: &[u8], forge: bool) {
    macro_rules! open {
        ($($t:ty),*) => {$(
            let bytes = if forge { forged::<$t>(codec, data) } else { data.to_vec() };
            let _ = codec.open::<$t>(&bytes, KEY_CHECK);
        )*};
    }
    open!(Tree, List, Profile, String, Vec<u64>, (u64, String), Option<Vec<Option<u8>>>);
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let codec = if first & 1 == 0 { CodecKind::MessagePack } else { CodecKind::Json };
    open_all(codec, rest, first & 2 == 0);
});
