//! The daemon's log level: `info` (or `debug` under `-d`), changed by
//! `HOPWARD_LOG`.
//!
//! Invariant: a `HOPWARD_LOG` that is not a list of levels and
//! `target=level` pairs keeps the default and is warned about once; it never
//! turns logging off (a bare word such as `debgu` would otherwise mean "only
//! the target named debgu", an empty value "nothing at all").

use tracing_subscriber::filter::{LevelFilter, Targets};

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn is_level(text: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(text))
}

/// Parses `HOPWARD_LOG`: comma-separated levels (`debug`) and
/// `target=level` pairs (`hopward=debug,zbus=warn`).
pub(crate) fn parse(text: &str) -> Result<Targets, String> {
    let mut directives = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let ok = match part.split_once('=') {
            None => is_level(part),
            Some((target, level)) => {
                !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
                    && is_level(level)
            }
        };
        if !ok {
            return Err(format!(
                "HOPWARD_LOG={text:?}: {part:?} is not a level ({}) or target=level",
                LEVELS.join(", ")
            ));
        }
        directives.push(part);
    }
    directives
        .join(",")
        .parse::<Targets>()
        .map_err(|e| format!("HOPWARD_LOG={text:?}: {e}"))
}

/// The filter for this run, and a warning to log once logging is up when
/// `HOPWARD_LOG` was set to something that does not parse.
pub(crate) fn filter(debug: bool, env: Option<&str>) -> (Targets, Option<String>) {
    let default = Targets::new().with_default(if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    });
    match env.map(parse) {
        None => (default, None),
        Some(Ok(targets)) => (targets, None),
        Some(Err(e)) => (
            default,
            Some(format!(
                "{e}; keeping the default level ({})",
                if debug { "debug" } else { "info" }
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_pairs_parse_and_anything_else_keeps_the_default() {
        for good in ["debug", "WARN", "hopward=debug,zbus=warn", "info, zbus=off"] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for bad in [
            "debgu",
            "",
            "hopward",
            "=== not a filter",
            "hopward=loud",
            ",",
        ] {
            let (targets, warning) = filter(false, Some(bad));
            assert!(warning.is_some(), "{bad:?} must be warned about");
            assert_eq!(
                targets.default_level(),
                Some(LevelFilter::INFO),
                "{bad:?} keeps the default"
            );
        }
        assert!(filter(true, None).1.is_none());
    }
}
