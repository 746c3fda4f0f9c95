//! A deserializer that bounds nesting depth and pre-allocation for any
//! format underneath it.
//!
//! Format-level depth limits are not enough: rmp-serde counts arrays and
//! maps but not enum variants (`0x81 0x01` repeated is a `Node(Box<Tree>)`
//! ten thousand deep), and no format counts `Option`s and newtypes, so
//! `struct List(Option<Box<List>>)` recurses forever on one non-nil byte
//! without consuming it. Every level of a value goes through one
//! `Deserializer::deserialize_*` call, so [`Depth`] counts those calls
//! (whatever the format) and fails past [`MAX_DEPTH`].
//!
//! Sequences and maps report no size hint: a forged length prefix cannot
//! make serde reserve room for elements that are not there, so what a
//! decode allocates grows with the bytes actually read.

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use std::cell::Cell;
use std::fmt;

/// The deepest value a codec decodes: every `deserialize_*` call (a struct,
/// a field's `Option`, a newtype, an enum variant, a sequence) is a level.
/// 128 like serde_json; a debug build uses well under 1 MiB of stack for it.
pub const MAX_DEPTH: u32 = 128;

/// Wraps a deserializer; `budget` is the number of levels left.
pub(crate) struct Depth<'b, D> {
    pub(crate) inner: D,
    pub(crate) budget: &'b Cell<u32>,
}

struct Wrap<'b, T> {
    inner: T,
    budget: &'b Cell<u32>,
}

fn enter<E: de::Error>(budget: &Cell<u32>) -> Result<(), E> {
    match budget.get() {
        0 => Err(E::custom(format_args!(
            "nesting deeper than {MAX_DEPTH} levels"
        ))),
        n => {
            budget.set(n - 1);
            Ok(())
        }
    }
}

macro_rules! guarded {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            enter::<D::Error>(self.budget)?;
            let out = self.inner.$method($($arg,)* Wrap { inner: visitor, budget: self.budget });
            self.budget.set(self.budget.get() + 1);
            out
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Depth<'_, D> {
    type Error = D::Error;

    guarded! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf();
        deserialize_option(); deserialize_unit(); deserialize_seq(); deserialize_map();
        deserialize_identifier(); deserialize_ignored_any();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visits {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visits! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char);
        visit_str(&str); visit_borrowed_str(&'de str); visit_string(String);
        visit_bytes(&[u8]); visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Depth {
            inner: d,
            budget: self.budget,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Depth {
            inner: d,
            budget: self.budget,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Wrap {
            inner: seq,
            budget: self.budget,
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Wrap {
            inner: map,
            budget: self.budget,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Wrap {
            inner: data,
            budget: self.budget,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.deserialize(Depth {
            inner: d,
            budget: self.budget,
        })
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Wrap {
            inner: seed,
            budget: self.budget,
        })
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Wrap {
            inner: seed,
            budget: self.budget,
        })
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Wrap {
            inner: seed,
            budget: self.budget,
        })
    }
}

impl<'de, 'b, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Wrap<'b, A> {
    type Error = A::Error;
    type Variant = Wrap<'b, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let budget = self.budget;
        let (value, variant) = self.inner.variant_seed(Wrap {
            inner: seed,
            budget,
        })?;
        Ok((
            value,
            Wrap {
                inner: variant,
                budget,
            },
        ))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.newtype_variant_seed(Wrap {
            inner: seed,
            budget: self.budget,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        // A tuple variant is a level of its own (it does not go through `Depth`).
        enter::<A::Error>(self.budget)?;
        let out = self.inner.tuple_variant(
            len,
            Wrap {
                inner: visitor,
                budget: self.budget,
            },
        );
        self.budget.set(self.budget.get() + 1);
        out
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        enter::<A::Error>(self.budget)?;
        let out = self.inner.struct_variant(
            fields,
            Wrap {
                inner: visitor,
                budget: self.budget,
            },
        );
        self.budget.set(self.budget.get() + 1);
        out
    }
}

/// Decodes `T` through `de` with at most [`MAX_DEPTH`] levels.
pub(crate) fn deserialize<'de, T: de::Deserialize<'de>, D: Deserializer<'de>>(
    de: D,
) -> Result<T, D::Error> {
    let budget = Cell::new(MAX_DEPTH);
    T::deserialize(Depth {
        inner: de,
        budget: &budget,
    })
}
