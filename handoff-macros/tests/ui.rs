//! Misuse of `#[handoff::interface]` is a compile error that points at the
//! mistake and says what to write instead.

#[test]
fn misuse_is_a_clear_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
