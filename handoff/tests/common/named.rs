//! An entry of a JSON array found by its "name": the `handoff` tests read
//! the golden vectors that way, and `handoff-cli`'s tests (which include
//! this file by path) the supervisor's status.

/// The entry of the JSON array `list` whose "name" is `name`; fails the
/// test, calling the entry a `what`, if there is none.
pub fn named<'a>(list: &'a serde_json::Value, what: &str, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no {what} {name}"))
}
