//! The invalidation notices processes send each other on the bus.

/// An invalidation notice on the bus:
/// `1\t{instance}\t{op}\t{namespace}\t{argument}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notice<'a> {
    /// Drop the local copy of one stable key of a function.
    Key { namespace: &'a str, stable: &'a str },
    /// Drop every local copy of a function; its shared version is now `version`.
    All { namespace: &'a str, version: u64 },
    /// Drop local copies whose stable key starts with `prefix`.
    Prefix { prefix: &'a str },
    /// Drop every local copy carrying `tag`.
    Tag { tag: &'a str },
    /// Drop every local copy of the functions of a version group; its
    /// version is now `version`.
    Group { group: &'a str, version: u64 },
    /// Drop every local copy.
    Clear,
}

impl Notice<'_> {
    pub(crate) fn encode(&self, instance: &str) -> String {
        match self {
            Notice::Key { namespace, stable } => format!("1\t{instance}\tk\t{namespace}\t{stable}"),
            Notice::All { namespace, version } => {
                format!("1\t{instance}\ta\t{namespace}\t{version}")
            }
            Notice::Prefix { prefix } => format!("1\t{instance}\tp\t\t{prefix}"),
            Notice::Group { group, version } => format!("1\t{instance}\tg\t{group}\t{version}"),
            Notice::Tag { tag } => format!("1\t{instance}\tt\t\t{tag}"),
            Notice::Clear => format!("1\t{instance}\tc\t\t"),
        }
    }

    /// The notice and the instance that sent it; `None` for anything else.
    pub(crate) fn decode(text: &str) -> Option<(&str, Notice<'_>)> {
        let mut parts = text.splitn(5, '\t');
        if parts.next()? != "1" {
            return None;
        }
        let instance = parts.next()?;
        let op = parts.next()?;
        let namespace = parts.next()?;
        let arg = parts.next()?;
        let notice = match op {
            "k" => Notice::Key {
                namespace,
                stable: arg,
            },
            "a" => Notice::All {
                namespace,
                version: arg.parse().ok()?,
            },
            "p" => Notice::Prefix { prefix: arg },
            "t" => Notice::Tag { tag: arg },
            "g" => Notice::Group {
                group: namespace,
                version: arg.parse().ok()?,
            },
            "c" => Notice::Clear,
            _ => return None,
        };
        Some((instance, notice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_garbage_is_ignored() {
        for n in [
            Notice::Key {
                namespace: "user",
                stable: "user:42",
            },
            Notice::All {
                namespace: "a::b",
                version: 17,
            },
            Notice::Prefix { prefix: "search:r" },
            Notice::Clear,
        ] {
            let text = n.encode("abc");
            assert_eq!(Notice::decode(&text), Some(("abc", n)));
        }
        for bad in [
            "",
            "2\tx\tk\tn\ts",
            "1\tx\tz\tn\ts",
            "1\tx\ta\tn\tNaN",
            "1\tx",
        ] {
            assert_eq!(Notice::decode(bad), None, "{bad:?}");
        }
    }
}
