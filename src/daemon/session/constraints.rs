//! The constraints every kind of key add takes (`ssh-add -t`, `-c`, `-h`),
//! read from the request, and the daemon's default lifetime.

use crate::keys::keystore::Constraints;
use crate::protocol::request::Constraint;
use crate::trust::destination;

use super::Session;
use super::refusal::Refusal;

impl Session {
    /// `-t` of the daemon, for a key added without a lifetime of its own.
    pub(super) fn default_lifetime(&self, parsed: &mut Constraints) {
        if parsed.lifetime.is_none() {
            parsed.lifetime = self
                .agent
                .options()
                .default_lifetime
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        }
    }

    /// A lifetime, `-c`, or destinations. `Ok(true)` when the constraint
    /// was given already; a bad destination constraint, or a kind the
    /// caller should have taken itself, is refused (the log line starts
    /// with `refusal`).
    pub(super) fn common_constraint(
        &self,
        parsed: &mut Constraints,
        constraint: &Constraint<'_>,
        refusal: &str,
    ) -> Result<bool, Refusal> {
        match constraint {
            Constraint::Lifetime(secs) => Ok(parsed.lifetime.replace(*secs).is_some()),
            Constraint::Confirm => Ok(std::mem::replace(&mut parsed.confirm, true)),
            Constraint::RestrictDestination(body) => match destination::parse_constraints(body) {
                Ok(list) => {
                    let had = !parsed.destinations.is_empty();
                    parsed.destinations = list;
                    Ok(had)
                }
                Err(e) => Err(Refusal::warn(format!(
                    "{refusal}: bad destination constraint: {e}"
                ))),
            },
            other => Err(Refusal::warn(format!(
                "{refusal}: constraint {other:?} is not valid here"
            ))),
        }
    }
}
