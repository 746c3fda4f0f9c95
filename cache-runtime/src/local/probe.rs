//! Looking a call up by its borrowed arguments: a hit on `f(&str)` or
//! `f(&[T])` finds the entry of the owned key (`(String,)`, `(Vec<T>,)`)
//! without building it; the owned key is made only on a miss.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use quick_cache::Equivalent;

/// A call's arguments as references (`(&A, &B, ...)`), standing for the
/// tuple of their owned forms (`(A::Owned, B::Owned, ...)`), the key the
/// local tier keeps.
///
/// It hashes exactly as the owned tuple does (a tuple hashes its elements
/// in order; `String` hashes as `str`, `Vec<T>` as `[T]`, and `ToOwned`'s
/// `Borrow` bound promises the same of every owned form), and compares
/// element by element through [`Borrow`].
pub struct Probe<T>(pub T);

impl<T: Hash> Hash for Probe<T> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

macro_rules! probe_tuple {
    ($($a:ident $i:tt),*) => {
        impl<'a, $($a: ?Sized + ToOwned + Eq + Hash),*> Equivalent<($($a::Owned,)*)> for Probe<($(&'a $a,)*)> {
            #[inline]
            fn equivalent(&self, _key: &($($a::Owned,)*)) -> bool {
                true $(&& *self.0.$i == *Borrow::<$a>::borrow(&_key.$i))*
            }
        }
    };
}

probe_tuple!();
probe_tuple!(A 0);
probe_tuple!(A 0, B 1);
probe_tuple!(A 0, B 1, C 2);
probe_tuple!(A 0, B 1, C 2, D 3);
probe_tuple!(A 0, B 1, C 2, D 3, E 4);
probe_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);
probe_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
probe_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
probe_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8);
probe_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9);
probe_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, L 10);
probe_tuple!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9, L 10, M 11);

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn borrowed_arguments_hash_and_compare_as_their_owned_key() {
        let (name, ids, n) = ("ada", [1u32, 2], 7u64);
        let probe = Probe((name, &ids[..], &n));
        let key: (String, Vec<u32>, u64) = ("ada".into(), vec![1, 2], 7);
        let hasher = quick_cache::DefaultHashBuilder::default();
        assert_eq!(hasher.hash_one(&probe), hasher.hash_one(&key));
        assert!(probe.equivalent(&key));
        assert!(!Probe(("bob", &ids[..], &n)).equivalent(&key));
        assert!(!Probe((name, &ids[..1], &n)).equivalent(&key));
        assert!(Probe(()).equivalent(&()));
        assert_eq!(hasher.hash_one(Probe(())), hasher.hash_one(()));
    }

    #[test]
    fn the_store_finds_an_owned_key_by_its_borrowed_arguments() {
        let cache = quick_cache::sync::Cache::<(String, u64), u32>::new(16);
        cache.insert(("ada".into(), 1), 10);
        assert_eq!(cache.get(&Probe(("ada", &1u64))), Some(10));
        assert_eq!(cache.get(&Probe(("ada", &2u64))), None);
        assert_eq!(cache.get(&Probe(("bob", &1u64))), None);
    }
}
