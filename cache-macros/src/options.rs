//! The names of the macros' options, and the hint for one that is not
//! among them: the name another caching library uses for it, or a close
//! spelling ("did you mean `timeout`?").

/// The options of `#[cached(...)]`, in the order the error lists them.
pub const OPTIONS: &[&str] = &[
    "timeout",
    "timeout_ms",
    "key_prefix",
    "key",
    "max_entries",
    "max_bytes",
    "in_impl",
    "output",
    "tier",
    "local_timeout",
    "local_timeout_ms",
    "jitter",
    "cache_none",
    "none_timeout",
    "none_timeout_ms",
    "lock",
    "lock_timeout",
    "lock_timeout_ms",
    "stale_if_error",
    "stale_throttle",
    "stale_throttle_ms",
    "timeout_by",
    "time_to_idle",
    "time_to_idle_ms",
    "soft_timeout_ms",
    "hard_timeout_ms",
    "unless",
    "force_refresh",
    "cache_if",
    "refresh_ahead",
    "xfetch",
    "versioned",
    "tags",
];

/// Names other caching libraries use for our options.
const ALIASES: &[(&str, &str)] = &[
    ("time", "timeout"),
    ("ttl", "timeout"),
    ("ttl_secs", "timeout"),
    ("expire", "timeout"),
    ("expires", "timeout"),
    ("expiry", "timeout"),
    ("expiration", "timeout"),
    ("seconds", "timeout"),
    ("secs", "timeout"),
    ("ttl_ms", "timeout_ms"),
    ("ttl_millis", "timeout_ms"),
    ("timeout_millis", "timeout_ms"),
    ("millis", "timeout_ms"),
    ("ms", "timeout_ms"),
    ("prefix", "key_prefix"),
    ("namespace", "key_prefix"),
    ("name", "key_prefix"),
    ("template", "key"),
    ("key_template", "key"),
    ("convert", "key"),
    ("max_size", "max_entries"),
    ("size", "max_entries"),
    ("capacity", "max_entries"),
    ("max_capacity", "max_entries"),
    ("limit", "max_entries"),
    ("max_memory", "max_bytes"),
    ("memory_limit", "max_bytes"),
    ("max_weight", "max_bytes"),
    ("weight_capacity", "max_bytes"),
    ("max_size_bytes", "max_bytes"),
    ("mode", "output"),
    ("tiers", "tier"),
    ("layer", "tier"),
    ("level", "tier"),
    ("local_ttl", "local_timeout"),
    ("l1_timeout", "local_timeout"),
    ("local_ttl_ms", "local_timeout_ms"),
    ("returns", "output"),
    ("result", "output"),
    ("ttl_jitter", "jitter"),
    ("spread", "jitter"),
    ("cache_null", "cache_none"),
    ("negative", "cache_none"),
    ("negative_cache", "cache_none"),
    ("cache_empty", "cache_none"),
    ("none_ttl", "none_timeout"),
    ("negative_timeout", "none_timeout"),
    ("negative_ttl", "none_timeout"),
    ("none_ttl_ms", "none_timeout_ms"),
    ("distributed_lock", "lock"),
    ("sync_lock", "lock"),
    ("locked", "lock"),
    ("lock_ttl", "lock_timeout"),
    ("lock_ttl_ms", "lock_timeout_ms"),
    ("fail_safe", "stale_if_error"),
    ("failsafe", "stale_if_error"),
    ("stale_on_error", "stale_if_error"),
    ("serve_stale", "stale_if_error"),
    ("max_stale", "stale_if_error"),
    ("fail_safe_throttle", "stale_throttle"),
    ("failsafe_throttle", "stale_throttle"),
    ("throttle", "stale_throttle"),
    ("fail_safe_throttle_ms", "stale_throttle_ms"),
    ("soft_timeout", "soft_timeout_ms"),
    ("factory_soft_timeout", "soft_timeout_ms"),
    ("hard_timeout", "hard_timeout_ms"),
    ("factory_hard_timeout", "hard_timeout_ms"),
    ("origin_timeout", "hard_timeout_ms"),
    ("expires_by", "timeout_by"),
    ("ttl_by", "timeout_by"),
    ("ttl_fn", "timeout_by"),
    ("expiry_fn", "timeout_by"),
    ("timeout_fn", "timeout_by"),
    ("tti", "time_to_idle"),
    ("idle", "time_to_idle"),
    ("idle_timeout", "time_to_idle"),
    ("sliding", "time_to_idle"),
    ("sliding_expiration", "time_to_idle"),
    ("expire_after_access", "time_to_idle"),
    ("time_to_idle_secs", "time_to_idle"),
    ("tti_ms", "time_to_idle_ms"),
    ("idle_timeout_ms", "time_to_idle_ms"),
    ("forced_update", "force_refresh"),
    ("force_update", "force_refresh"),
    ("refresh_if", "force_refresh"),
    ("skip_if", "unless"),
    ("bypass_if", "unless"),
    ("condition", "cache_if"),
    ("filter", "cache_if"),
    ("response_filter", "cache_if"),
    ("store_if", "cache_if"),
    ("veto", "cache_if"),
    ("x_fetch", "xfetch"),
    ("probabilistic_refresh", "xfetch"),
    ("eager_refresh", "xfetch"),
    ("beta", "xfetch"),
    ("refresh", "refresh_ahead"),
    ("refresh_after", "refresh_ahead"),
    ("early_refresh", "refresh_ahead"),
    ("refresh_factor", "refresh_ahead"),
    ("version", "versioned"),
    ("version_group", "versioned"),
    ("group", "versioned"),
    ("cache_type", "versioned"),
];

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "did you mean ...?" for an unknown option name, if one is close.
fn suggest(name: &str, options: &[&'static str]) -> Option<&'static str> {
    if let Some((_, to)) = ALIASES.iter().find(|(from, _)| *from == name) {
        if options.contains(to) {
            return Some(to);
        }
    }
    options
        .iter()
        .map(|o| (levenshtein(name, o), *o))
        .filter(|(d, o)| *d <= 2 && *d < o.len())
        .min()
        .map(|(_, o)| o)
}

/// The error for option `name` (at `path`) that `attr` does not know.
pub fn unknown_option(
    path: &syn::Path,
    name: &str,
    options: &[&'static str],
    attr: &str,
) -> syn::Error {
    let list = options
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let msg = match suggest(name, options) {
        Some(s) => format!("unknown `{attr}` option `{name}`: did you mean `{s}`?"),
        None => format!("unknown `{attr}` option `{name}`; expected one of {list}"),
    };
    syn::Error::new_spanned(path, msg)
}
