//! Process limits a restart handover checks before taking descriptors.

/// The soft limit on open descriptors (`RLIMIT_NOFILE`), `None` when
/// unlimited.
pub(crate) fn open_file_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}
