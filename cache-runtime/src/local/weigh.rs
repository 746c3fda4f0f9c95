//! What an entry weighs under a byte bound (`max_bytes`).
//!
//! # The estimate
//!
//! An entry of key `K` and value `V` weighs
//!
//! ```text
//! size_of::<K>() + size_of::<Stored<V>>() + heap bytes of the key and value
//! ```
//!
//! where the heap bytes of a value are the length of its
//! [postcard](https://postcard.jamesmunns.com/wire-format) encoding
//! (counted, never written: no allocation): a string or byte string counts
//! its length, a sequence or map the sum of its elements, an integer its
//! varint width (1 to 10 bytes). It is the data a value holds, not its
//! allocator's rounding or a `Vec`'s spare capacity, and an array of small
//! integers weighs less than it occupies (one byte an element rather than
//! eight); a value postcard cannot encode (a sequence of unknown length)
//! weighs its inline size only. A function's key weighs its inline size
//! (the arguments' heap is not counted); a named cache's key, a `String`,
//! also its length.
//!
//! No [`Stored`] entry carries its weight (that would cost every entry of
//! every function 8 bytes): quick_cache computes it when it admits an
//! entry and again when it moves, replaces, evicts or removes it, never on
//! a read, so a hit costs nothing more and the rest is on the miss path,
//! which has just paid for the origin (moka weighs an entry once and keeps
//! the weight in the bookkeeping it has for every entry anyway). The
//! estimate must therefore not change while the entry is cached: a value
//! whose encoding can change in place (an `Arc<Mutex<..>>` or an atomic
//! shared with its callers) throws quick_cache's total off. A function
//! without `max_bytes` weighs nothing: its store counts entries.
//!
//! # Both bounds
//!
//! With `max_entries` as well, each entry weighs at least
//! `max_bytes / max_entries`: the weighed total stays under `max_bytes`,
//! so the bytes do, and so does the number of entries.

use std::any::Any;
use std::mem::size_of;

use serde::Serialize;

use super::Stored;

/// The heap bytes of an entry's key and value (the value as `&dyn Any`,
/// so a [`FnSpec`](crate::pipeline::FnSpec), which names only `K`, can hold it).
pub type HeapBytes<K> = fn(&K, &dyn Any) -> u64;

/// A store's byte bound.
pub struct ByteBound<K> {
    /// The most the weighed entries may add up to.
    pub max_bytes: u64,
    /// The least an entry weighs: `max_bytes / max_entries` when both are declared.
    pub min_weight: u64,
    /// The heap part of the estimate; `None` counts inline sizes only.
    pub heap_bytes: Option<HeapBytes<K>>,
}

impl<K> Clone for ByteBound<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for ByteBound<K> {}

impl<K: 'static> ByteBound<K> {
    /// The bound of `max_bytes`, with `max_entries` when declared too.
    pub fn new(max_bytes: u64, max_entries: Option<u64>, heap_bytes: Option<HeapBytes<K>>) -> Self {
        let max_bytes = max_bytes.max(1);
        ByteBound {
            max_bytes,
            min_weight: max_entries.map_or(0, |n| max_bytes / n.max(1)),
            heap_bytes,
        }
    }

    /// What the entry of `key` and `value` weighs (see the module docs).
    pub fn weigh<V: 'static>(&self, key: &K, value: &V) -> u64 {
        let inline = (size_of::<K>() + size_of::<Stored<V>>()) as u64;
        let heap = self.heap_bytes.map_or(0, |heap| heap(key, value));
        inline.saturating_add(heap).max(self.min_weight).max(1)
    }
}

/// The heap bytes of `value` if it is a `V`: its postcard length, or 0
/// when postcard cannot encode it (see the module docs).
pub fn heap_bytes_of<V: Serialize + 'static>(value: &dyn Any) -> u64 {
    value.downcast_ref::<V>().map_or(0, encoded_len)
}

fn encoded_len<V: Serialize + ?Sized>(value: &V) -> u64 {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .map_or(0, |n| n as u64)
}

/// A value of the manual cache's local tier: any value, stored type-erased,
/// that can still tell its heap bytes (the manual cache knows a value's
/// type when it stores it, not when a byte bound weighs it).
pub trait Weighable: Any + Send + Sync {
    /// The heap part of the estimate (see the module docs).
    fn heap_bytes(&self) -> u64;
}

impl<T: Serialize + Send + Sync + 'static> Weighable for T {
    fn heap_bytes(&self) -> u64 {
        encoded_len(self)
    }
}

impl dyn Weighable {
    /// The value if it is a `T`.
    #[inline]
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        (self as &dyn Any).downcast_ref::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_value_weighs_its_encoded_data_and_an_entry_its_inline_size_too() {
        let bound = ByteBound::<u64>::new(1 << 20, None, Some(|_, v| heap_bytes_of::<String>(v)));
        let inline = (size_of::<u64>() + size_of::<Stored<String>>()) as u64;
        // A string of 1,000 bytes: its length and a two-byte varint length prefix.
        assert_eq!(bound.weigh(&1, &"x".repeat(1000)), inline + 1002);
        assert_eq!(bound.weigh(&1, &String::new()), inline + 1);
        let inline_only = ByteBound::<u64>::new(1 << 20, None, None);
        assert_eq!(inline_only.weigh(&1, &"x".repeat(1000)), inline);
    }

    #[test]
    fn with_max_entries_an_entry_weighs_at_least_its_share_of_the_bytes() {
        let bound = ByteBound::<u64>::new(10_000, Some(10), None);
        assert_eq!(bound.weigh(&1, &0u8), 1_000);
    }

    #[test]
    fn a_type_erased_manual_value_still_knows_its_heap_bytes_and_type() {
        let v: Arc<dyn Weighable> = Arc::new(vec![7u8; 300]);
        assert_eq!(v.heap_bytes(), 302);
        assert_eq!(v.downcast_ref::<Vec<u8>>().map(Vec::len), Some(300));
        assert!(v.downcast_ref::<String>().is_none());
    }
}
