//! Profile files: `layercache.toml`, or the file named by
//! `CACHE_CONFIG_FILE`, holds one table per environment, its keys the
//! environment variables' names, as the guide writes them:
//!
//! ```toml
//! [development]
//! CACHE_TYPE = "simple"
//! CACHE_DEFAULT_TIMEOUT = 300
//!
//! [production]
//! CACHE_TYPE = "redis"
//! CACHE_REDIS_HOST = "localhost"
//! CACHE_REDIS_PORT = 6379
//! CACHE_REDIS_DB = 0
//! CACHE_DEFAULT_TIMEOUT = 600
//!
//! [testing]
//! CACHE_TYPE = "null"
//! CACHE_NO_NULL_WARNING = true
//! ```
//!
//! `CACHE_ENV` picks the table (default `development`). Values may be
//! strings, numbers, booleans or lists (joined with `,`, for the server
//! lists). Keys are checked in every table, so a typo in `[production]`
//! is found on a developer's machine.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use super::{ConfigError, VARIABLES};

/// The profile file read from the working directory when
/// `CACHE_CONFIG_FILE` is not set (and it exists).
pub const DEFAULT_PROFILE_FILE: &str = "layercache.toml";
/// The profile read when `CACHE_ENV` is not set.
pub const DEFAULT_PROFILE: &str = "development";

/// A profile file larger than this is refused, not read: settings fit in
/// a few kilobytes, and a wrong path could name a huge file.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

/// The values of one table of a profile file (no `Debug`: they may hold a password).
pub(super) struct Profile {
    pub(super) file: String,
    pub(super) table: String,
    values: BTreeMap<String, String>,
}

impl Profile {
    /// The profile the variables point at: `CACHE_CONFIG_FILE` (which must
    /// exist), else `layercache.toml` when it exists; `None` when there is
    /// no file and `CACHE_ENV` does not ask for one.
    pub(super) fn find(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Profile>, ConfigError> {
        let named_env = get("CACHE_ENV").map(|e| e.trim().to_string());
        let file = match get("CACHE_CONFIG_FILE") {
            Some(path) => path.trim().to_string(),
            None if Path::new(DEFAULT_PROFILE_FILE).exists() => DEFAULT_PROFILE_FILE.to_string(),
            None => {
                return match named_env {
                    // Asking for a profile and silently getting the defaults would hide a bad deployment.
                    Some(env) => Err(ConfigError::Profile {
                        variable: "CACHE_ENV",
                        file: DEFAULT_PROFILE_FILE.to_string(),
                        reason: format!(
                            "CACHE_ENV={env:?} names a profile, but there is no {DEFAULT_PROFILE_FILE} in the working directory{} and CACHE_CONFIG_FILE is not set",
                            std::env::current_dir().map(|d| format!(" ({})", d.display())).unwrap_or_default()
                        ),
                    }),
                    None => Ok(None),
                };
            }
        };
        let env = named_env.unwrap_or_else(|| DEFAULT_PROFILE.to_string());
        Profile::read(&file, &env).map(Some)
    }

    /// The table `env` of `file`, every table's keys checked.
    pub(super) fn read(file: &str, env: &str) -> Result<Profile, ConfigError> {
        let error = |variable, reason: String| ConfigError::Profile {
            variable,
            file: file.to_string(),
            reason,
        };
        let mut text = String::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_PROFILE_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| {
                error(
                    "CACHE_CONFIG_FILE",
                    format!("cannot read the profile file: {e}"),
                )
            })?;
        if text.len() as u64 > MAX_PROFILE_BYTES {
            return Err(error(
                "CACHE_CONFIG_FILE",
                format!("larger than {MAX_PROFILE_BYTES} bytes; is it the profile file?"),
            ));
        }
        // The error's message only: its rendering quotes the line, which may hold a password.
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            error(
                "CACHE_CONFIG_FILE",
                format!("not valid TOML at line {line}: {}", e.message().trim_end()),
            )
        })?;
        let tables: Vec<String> = root.keys().map(|k| format!("[{k}]")).collect();
        let mut chosen = None;
        for (name, value) in root {
            let toml::Value::Table(table) = value else {
                return Err(error(
                    "CACHE_CONFIG_FILE",
                    format!("{name} is outside any profile; put it under [development], [production] or [testing]"),
                ));
            };
            let values = check_table(&name, table).map_err(|r| error("CACHE_CONFIG_FILE", r))?;
            if name == env {
                chosen = Some(values);
            }
        }
        let Some(values) = chosen else {
            let found = if tables.is_empty() {
                "none".to_string()
            } else {
                tables.join(", ")
            };
            return Err(error(
                "CACHE_ENV",
                format!("no [{env}] profile (CACHE_ENV picks it, default {DEFAULT_PROFILE}); the file has {found}"),
            ));
        };
        Ok(Profile {
            file: file.to_string(),
            table: env.to_string(),
            values,
        })
    }

    /// The profile's value of a variable, as the environment would give it.
    pub(super) fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }
}

/// The table's values as strings; every key a variable, every value a scalar or a list.
fn check_table(table: &str, values: toml::Table) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (key, value) in values {
        if matches!(key.as_str(), "CACHE_ENV" | "CACHE_CONFIG_FILE") {
            return Err(format!(
                "{key} in [{table}]: it chooses the profile, so it is set in the environment only"
            ));
        }
        if !VARIABLES.contains(&key.as_str()) {
            let hint = suggestion(&key).map_or(String::new(), |s| format!(" (did you mean {s}?)"));
            return Err(format!(
                "unknown key {key:?} in [{table}]{hint}; a profile's keys are the environment variables' names, like CACHE_TYPE"
            ));
        }
        let text = scalar(&value)
            .or_else(|| match &value {
                toml::Value::Array(items) => items
                    .iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join(",")),
                _ => None,
            })
            .ok_or_else(|| {
                format!("{key} in [{table}]: expected a string, number, boolean or list of them")
            })?;
        out.insert(key, text);
    }
    Ok(out)
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `type`, `default_timeout`, `cache_type`: the variable meant.
fn suggestion(key: &str) -> Option<&'static str> {
    let upper = key.trim().to_ascii_uppercase().replace('-', "_");
    let full = if upper.starts_with("CACHE_") {
        upper
    } else {
        format!("CACHE_{upper}")
    };
    VARIABLES.iter().copied().find(|v| *v == full)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::{CacheType, Config, ConfigError};

    /// A profile file in the temporary directory, removed when dropped.
    struct File(PathBuf);

    impl File {
        fn new(name: &str, text: &str) -> File {
            let path = std::env::temp_dir().join(format!(
                "layercache-profile-{}-{name}.toml",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            File(path)
        }
        fn path(&self) -> String {
            self.0.display().to_string()
        }
        /// The configuration for these variables, with CACHE_CONFIG_FILE naming this file.
        fn load(&self, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
            let path = self.path();
            Config::from_lookup(|name| {
                if name == "CACHE_CONFIG_FILE" {
                    return Some(path.clone());
                }
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            })
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// The guide's three profiles, written as its Python dicts are.
    const GUIDE: &str = r#"
[development]
CACHE_TYPE = "simple"
CACHE_DEFAULT_TIMEOUT = 300

[production]
CACHE_TYPE = "redis"
CACHE_REDIS_HOST = "localhost"
CACHE_REDIS_PORT = 6379
CACHE_REDIS_DB = 0
CACHE_DEFAULT_TIMEOUT = 600
CACHE_KEY_PREFIX = "shop"

[testing]
CACHE_TYPE = "null"  # caching off
CACHE_NO_NULL_WARNING = true
"#;

    #[test]
    fn the_development_profile_is_read_when_cache_env_is_not_set() {
        let file = File::new("dev", GUIDE);
        let c = file.load(&[]).unwrap();
        assert_eq!(c.cache_type(), CacheType::Simple);
        assert_eq!(c.default_timeout(), Some(Duration::from_secs(300)));
        let c = file.load(&[("CACHE_ENV", "development")]).unwrap();
        assert_eq!(c.default_timeout(), Some(Duration::from_secs(300)));
    }

    #[test]
    fn the_production_profile_builds_the_redis_url_from_the_guides_parts() {
        let file = File::new("prod", GUIDE);
        let result = file.load(&[("CACHE_ENV", "production")]);
        #[cfg(feature = "redis")]
        {
            let c = result.unwrap();
            assert_eq!(c.cache_type(), CacheType::Redis);
            assert_eq!(c.redis_url(), "redis://localhost:6379/0");
            assert_eq!(c.default_timeout(), Some(Duration::from_secs(600)));
            assert_eq!(c.key_prefix(), "shop");
        }
        #[cfg(not(feature = "redis"))]
        {
            let err = result.unwrap_err();
            assert_eq!(err.variable(), "CACHE_TYPE");
            assert!(
                matches!(err, ConfigError::InProfile { ref table, .. } if table == "production")
            );
        }
    }

    #[test]
    fn the_testing_profile_turns_caching_off_with_the_guides_no_null_warning() {
        let file = File::new("testing", GUIDE);
        let c = file.load(&[("CACHE_ENV", "testing")]).unwrap();
        assert_eq!(c.cache_type(), CacheType::Null);
        assert_eq!(c.default_timeout(), Some(crate::DEFAULT_TIMEOUT));
    }

    #[test]
    fn environment_variables_override_the_profile_and_empty_ones_do_not() {
        let file = File::new("override", GUIDE);
        let c = file
            .load(&[
                ("CACHE_ENV", "development"),
                ("CACHE_DEFAULT_TIMEOUT", "42"),
                ("CACHE_TYPE", " "),
                ("CACHE_KEY_PREFIX", "mine"),
            ])
            .unwrap();
        assert_eq!(c.default_timeout(), Some(Duration::from_secs(42)));
        assert_eq!(c.cache_type(), CacheType::Simple, "empty = unset");
        assert_eq!(c.key_prefix(), "mine");
    }

    #[test]
    fn from_profile_reads_the_named_table_of_the_named_file() {
        let file = File::new("code", GUIDE);
        let c = Config::from_profile(&file.0, "testing").unwrap();
        assert_eq!(c.cache_type(), CacheType::Null);
        let err = Config::from_profile(&file.0, "staging").unwrap_err();
        assert_eq!(err.variable(), "CACHE_ENV");
    }

    #[test]
    fn a_missing_table_names_it_the_file_and_the_tables_there() {
        let file = File::new("notable", GUIDE);
        let err = file.load(&[("CACHE_ENV", "staging")]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_ENV");
        let msg = err.to_string();
        assert!(msg.starts_with(&file.path()), "{msg}");
        assert!(msg.contains("no [staging] profile"), "{msg}");
        assert!(
            msg.contains("[development], [production], [testing]"),
            "{msg}"
        );
        let file = File::new("nodev", "[production]\nCACHE_TYPE = \"simple\"\n");
        let err = file.load(&[]).unwrap_err();
        assert!(
            err.to_string().contains("no [development] profile"),
            "{err}"
        );
    }

    #[test]
    fn a_named_file_that_does_not_exist_is_an_error_naming_it() {
        let err = Config::from_lookup(|n| {
            (n == "CACHE_CONFIG_FILE").then(|| "/nonexistent/layercache.toml".to_string())
        })
        .unwrap_err();
        assert_eq!(err.variable(), "CACHE_CONFIG_FILE");
        let msg = err.to_string();
        assert!(
            msg.starts_with("/nonexistent/layercache.toml: cannot read"),
            "{msg}"
        );
    }

    #[test]
    fn a_huge_or_binary_file_is_refused_with_a_clear_error() {
        let file = File::new("huge", &"# padding\n".repeat(120_000));
        let err = file.load(&[]).unwrap_err();
        assert!(
            err.to_string().contains("larger than 1048576 bytes"),
            "{err}"
        );
        std::fs::write(&file.0, [0xff, 0xfe, 0x00, 0x5b]).unwrap();
        let err = file.load(&[]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_CONFIG_FILE");
        assert!(
            err.to_string().contains("cannot read the profile file"),
            "{err}"
        );
    }

    #[test]
    fn cache_env_without_any_profile_file_is_an_error() {
        let err = Config::from_lookup(|n| (n == "CACHE_ENV").then(|| "production".to_string()))
            .unwrap_err();
        assert_eq!(err.variable(), "CACHE_ENV");
        assert!(
            err.to_string()
                .contains("no layercache.toml in the working directory"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_key_in_any_table_names_the_key_the_table_and_the_file() {
        let file = File::new(
            "unknown",
            "[development]\nCACHE_TYPE = \"simple\"\n[production]\nCACHE_TIMEOUT = 600\n",
        );
        let err = file.load(&[]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_CONFIG_FILE");
        let msg = err.to_string();
        assert!(msg.starts_with(&file.path()), "{msg}");
        assert!(
            msg.contains("unknown key \"CACHE_TIMEOUT\" in [production]"),
            "{msg}"
        );
    }

    #[test]
    fn a_short_or_lowercase_key_gets_the_variable_it_means() {
        for (key, meant) in [
            ("type", "CACHE_TYPE"),
            ("cache_type", "CACHE_TYPE"),
            ("default_timeout", "CACHE_DEFAULT_TIMEOUT"),
        ] {
            let file = File::new(key, &format!("[development]\n{key} = \"x\"\n"));
            let msg = file.load(&[]).unwrap_err().to_string();
            assert!(msg.contains(&format!("(did you mean {meant}?)")), "{msg}");
        }
    }

    #[test]
    fn keys_outside_a_table_choosing_keys_and_nested_values_are_refused() {
        for (name, text, says) in [
            ("top", "CACHE_TYPE = \"null\"\n", "outside any profile"),
            (
                "env",
                "[development]\nCACHE_ENV = \"production\"\n",
                "set in the environment only",
            ),
            (
                "nested",
                "[development]\nCACHE_DIR = { path = \"/tmp\" }\n",
                "CACHE_DIR in [development]: expected a string",
            ),
            (
                "date",
                "[development]\nCACHE_DIR = 1979-05-27\n",
                "CACHE_DIR in [development]: expected a string",
            ),
        ] {
            let file = File::new(name, text);
            let err = file.load(&[]).unwrap_err();
            assert_eq!(err.variable(), "CACHE_CONFIG_FILE", "{name}");
            assert!(err.to_string().contains(says), "{name}: {err}");
        }
    }

    #[test]
    fn an_empty_value_in_the_file_keeps_the_default_as_an_empty_variable_does() {
        let file = File::new(
            "empty",
            "[development]\nCACHE_DEFAULT_TIMEOUT = \"\"\nCACHE_TYPE = \" \"\n",
        );
        let c = file.load(&[]).unwrap();
        assert_eq!(c.default_timeout(), Some(crate::DEFAULT_TIMEOUT));
        assert_eq!(c.cache_type(), CacheType::Simple);
    }

    #[test]
    fn a_list_value_is_joined_with_commas() {
        let file = File::new(
            "list",
            "[development]\nCACHE_MEMCACHED_SERVERS = [\"a:11211\", \"b:11212\"]\n",
        );
        let c = file.load(&[]).unwrap();
        assert_eq!(c.memcached_servers(), ["a:11211", "b:11212"]);
    }

    #[test]
    fn an_invalid_value_from_the_file_names_the_key_the_table_and_the_file() {
        let file = File::new(
            "badvalue",
            "[production]\nCACHE_DEFAULT_TIMEOUT = -5\nCACHE_KEY_PREFIX = \"shop\"\n",
        );
        let err = file.load(&[("CACHE_ENV", "production")]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_DEFAULT_TIMEOUT");
        let msg = err.to_string();
        assert!(
            msg.starts_with("CACHE_DEFAULT_TIMEOUT=\"-5\" is invalid"),
            "{msg}"
        );
        assert!(
            msg.ends_with(&format!("(from [production] in {})", file.path())),
            "{msg}"
        );
        // A bad value from the environment, overriding the file's, is the environment's error.
        let err = file
            .load(&[("CACHE_ENV", "production"), ("CACHE_DEFAULT_TIMEOUT", "-7")])
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { ref value, .. } if value == "-7"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_toml_gives_the_line_but_never_the_text_of_a_secret() {
        let file = File::new(
            "broken",
            "[production]\nCACHE_REDIS_HOST = \"h\"\nCACHE_REDIS_PASSWORD = \"s3cret\n",
        );
        let err = file.load(&[("CACHE_ENV", "production")]).unwrap_err();
        assert_eq!(err.variable(), "CACHE_CONFIG_FILE");
        let msg = err.to_string();
        assert!(msg.contains("not valid TOML at line 3"), "{msg}");
        assert!(!msg.contains("s3cret"), "{msg}");
    }

    #[test]
    fn a_password_from_the_profile_is_never_in_debug_output() {
        let file = File::new(
            "secret",
            "[development]\nCACHE_REDIS_HOST = \"h\"\nCACHE_REDIS_PASSWORD = \"s3cret\"\n",
        );
        let c = file.load(&[]).unwrap();
        assert_eq!(c.redis_url(), "redis://:s3cret@h:6379/0");
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn every_variable_the_environment_reader_asks_for_is_a_profile_key() {
        let asked = RefCell::new(Vec::new());
        Config::from_lookup(|name| {
            asked.borrow_mut().push(name.to_string());
            None
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.retain(|n| n != "CACHE_ENV" && n != "CACHE_CONFIG_FILE");
        asked.sort();
        asked.dedup();
        let mut keys: Vec<String> = super::VARIABLES.iter().map(|v| v.to_string()).collect();
        keys.sort();
        assert_eq!(asked, keys);
    }
}
