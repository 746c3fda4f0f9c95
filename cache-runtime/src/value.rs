//! What a cached value must be: the bound every tier and the codec rely
//! on, below everything that stores values.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a cached value must be: cloneable (a hit hands out a copy),
/// shareable across threads, and serializable so that shared tiers can
/// store it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in layercache",
    label = "cached values must be `Clone + Send + Sync + Serialize + DeserializeOwned + 'static`",
    note = "derive `Clone`, `serde::Serialize` and `serde::Deserialize` for it, or cache an owned, serializable form"
)]
pub trait CacheValue: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> CacheValue for T {}
