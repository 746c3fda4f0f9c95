//! The key renderer with any argument values: escaping never lets a value
//! forge a separator, glob or brace, and two different values never render
//! alike (it can be undone).
#![no_main]

use layercache_runtime::key::{self, KeyBuilder};
use libfuzzer_sys::fuzz_target;

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("two hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (a, b) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(i, _)| i));
    for value in [a, b] {
        let escaped = key::escape(value);
        assert!(
            !escaped.contains(|c: char| matches!(c, ':' | '*' | '?' | '[' | ']' | '\\' | '{' | '}') || c.is_control()),
            "{escaped:?}"
        );
        assert_eq!(unescape(&escaped), value.as_bytes());
    }
    // `{a}:page:{b}` renders to exactly one `:page:` split.
    let rendered = KeyBuilder::new().value(a).literal(":page:").value(b).finish();
    assert_eq!(rendered.matches(':').count(), 2, "{rendered:?}");
    let mut out = String::from("ns:");
    let check = key::render_template(&rendered, &mut out).unwrap();
    assert_eq!(out, format!("ns:{rendered}"));
    let mut hashed = String::new();
    let check2 = key::render_hashed(&(a, b), &mut hashed).unwrap();
    assert_eq!(hashed.len(), 32);
    let _ = (check, check2);
});
