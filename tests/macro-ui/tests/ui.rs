//! Macro misuse is a compile error with a pinned message that points at the
//! offending token (`tests/ui/*.stderr`), and correct use compiles without a
//! warning under strict lints (`tests/ui-pass`). Regenerate the pins after an
//! intended change with `TRYBUILD=overwrite cargo test -p layercache-macro-ui` and review the diff.

#[test]
fn macro_misuse_is_a_compile_error_pointing_at_the_offending_token() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui-pass/*.rs");
}
