//! Parsers for values that several subcommands take. Each turns bad input
//! into a sentence for clap's error, never a panic.

use handoff::Access;

/// A process id: 1 to `i32::MAX` (the kernel's pid type is signed).
pub(crate) fn pid(s: &str) -> Result<u32, String> {
    let n: i64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a process id (expected a number)"))?;
    match u32::try_from(n) {
        Ok(pid) if pid >= 1 && n <= i64::from(i32::MAX) => Ok(pid),
        _ => Err(format!(
            "{n} is not a process id (ids run from 1 to {})",
            i32::MAX
        )),
    }
}

/// A handle number in some process: 0 to `i32::MAX`.
pub(crate) fn fd(s: &str) -> Result<i32, String> {
    let n: i64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a handle number (expected a number)"))?;
    i32::try_from(n).ok().filter(|fd| *fd >= 0).ok_or_else(|| {
        format!(
            "{n} is not a handle number (numbers run from 0 to {})",
            i32::MAX
        )
    })
}

/// `r`, `w` or `rw`.
pub(crate) fn access(s: &str) -> Result<Access, String> {
    Access::parse_short(s).ok_or_else(|| format!("{s:?} is not an access (expected r, w or rw)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_numbers_are_sentences() {
        assert_eq!(pid("42"), Ok(42));
        assert!(pid("0").is_err());
        assert!(pid("-3").is_err());
        assert!(pid("2147483648").is_err());
        assert!(pid("99999999999999999999999").is_err());
        assert!(pid("abc").unwrap_err().contains("not a process id"));
        assert_eq!(fd("0"), Ok(0));
        assert!(fd("-1").is_err());
        assert!(fd("3x").is_err());
        assert_eq!(access("rw"), Ok(Access::READ_WRITE));
        assert!(access("x").is_err());
    }
}
