//! Whatever arrives on the invalidation bus: a notice or nothing, never a
//! crash, and a notice that decodes survives encoding again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        layercache_runtime::__private::fuzz_notice(text);
    }
});
