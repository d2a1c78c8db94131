//! Problems in a policy file: each reported as `FILE:LINE:COL: message`
//! at the place it was written, gathered while a file is compiled so that
//! one run shows them all.

use std::ops::Range;
use std::time::Duration;

use super::raw::S;
use crate::policy::Action;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub(crate) line: usize,
    pub(crate) col: usize,
    pub message: String,
    pub(crate) warning: bool,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}{}",
            self.file,
            self.line,
            self.col,
            if self.warning { "warning: " } else { "" },
            self.message
        )
    }
}

/// Byte offset to 1-based line and column.
pub(super) fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// One file being compiled: its text (for positions), its name, and the
/// problems found so far.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) file: &'a str,
    pub(super) errors: Vec<PolicyError>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(text: &'a str, file: &'a str) -> Self {
        Ctx {
            text,
            file,
            errors: Vec::new(),
        }
    }

    pub(super) fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = position(self.text, span.start);
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            warning: false,
        });
    }

    pub(super) fn action(&mut self, v: &Option<S<String>>) -> Option<Action> {
        let v = v.as_ref()?;
        let a = Action::parse(v.get_ref());
        if a.is_none() {
            self.err(
                v.span(),
                format!(
                    "unknown action {:?} (use allow, notify, confirm or deny)",
                    v.get_ref()
                ),
            );
        }
        a
    }

    pub(super) fn duration(&mut self, v: &S<String>) -> Option<Duration> {
        match crate::duration::parse(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(v.span(), e.to_string());
                None
            }
        }
    }

    pub(super) fn patterns<T>(
        &mut self,
        list: &Option<S<Vec<S<String>>>>,
        field: &str,
        allow_empty: bool,
        compile: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let list = list.as_ref()?;
        if list.get_ref().is_empty() && !allow_empty {
            self.err(
                list.span(),
                format!("{field} = [] can never match; remove the field to match anything"),
            );
        }
        let mut out = Vec::new();
        for item in list.get_ref() {
            match compile(item.get_ref()) {
                Ok(p) => out.push(p),
                Err(e) => self.err(item.span(), format!("{field}: {e}")),
            }
        }
        Some(out)
    }
}

/// The TOML reader's message, with what to write instead where the
/// mistake is a common one (a single value where a list is wanted, a list
/// where one value is wanted).
pub(super) fn with_fix(text: &str, span: Range<usize>, message: &str) -> String {
    let line_start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    let value = text
        .get(span.clone())
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.contains('\n'));
    match (key, value) {
        (Some(key), Some(value)) if message.contains("expected a sequence") => {
            format!("{key} takes a list: use {key} = [{value}]")
        }
        (Some(key), Some(value)) if message.contains("expected a string") => {
            let first = value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .next()
                .unwrap_or("")
                .trim();
            if first.is_empty() {
                format!("{key} takes one value in quotes, not {value}")
            } else {
                format!("{key} takes one value: use {key} = {first}")
            }
        }
        _ => message.to_string(),
    }
}
