//! Reading `wssd bench --json` output: `serde_json` values, fields by
//! index (`j["messages"]`, `Null` when absent) and accessors that fail the
//! test with the value when it has the wrong type.

pub use serde_json::Value as Json;

/// Typed accessors that panic with the value instead of returning `None`.
pub trait JsonExt {
    /// The value as an unsigned integer.
    fn u64(&self) -> u64;
    /// The value as a number.
    fn f64(&self) -> f64;
    /// The value as an array.
    fn array(&self) -> &[Json];
}

impl JsonExt for Json {
    fn u64(&self) -> u64 {
        self.as_u64()
            .unwrap_or_else(|| panic!("not an unsigned integer: {self}"))
    }

    fn f64(&self) -> f64 {
        self.as_f64()
            .unwrap_or_else(|| panic!("not a number: {self}"))
    }

    fn array(&self) -> &[Json] {
        self.as_array()
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("not an array: {self}"))
    }
}
