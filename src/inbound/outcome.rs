//! Each request's outcome, counted and noted: the `baton_inbound_requests_total` counter (a
//! passing request's through its route's own counter, without a label lookup), the span's
//! outcome attributes when tracing, and the `forwarded` debug event.

use super::Inbound;
use super::active::{Active, passing_outcome};
use super::trace;
use crate::config::Route;
use http::{Method, StatusCode};
use tracing::debug;

/// Counts a request refused at one of `handle_plain`'s phases, on `route` with `outcome`;
/// `TRACED`: on the current span too.
pub(super) fn refused<const TRACED: bool>(s: &Inbound, route: &str, outcome: &'static str) {
    if TRACED {
        trace::note_outcome(route, outcome, true);
    }
    s.metrics.inbound(route, outcome);
}

/// Counts and logs a request the app answered with `status`, on the route `found` (`name`).
/// `outcome`: the refusal observe mode forwarded anyway; `None` for a request that passed,
/// counted with the route's passing outcome on its own counter, without a label lookup.
/// Always inlined: a named step of every forwarded request's path, not a call.
#[inline(always)]
pub(super) fn forwarded<const TRACED: bool>(
    s: &Inbound,
    active: &Active,
    found: Option<(usize, &Route)>,
    name: &str,
    outcome: Option<&'static str>,
    method: &Method,
    status: StatusCode,
) {
    let route = found.map(|(_, r)| r);
    let passing = || route.map_or("allowed", passing_outcome);
    if TRACED {
        trace::note_outcome(name, outcome.unwrap_or_else(passing), false);
    }
    match (outcome, found) {
        (None, Some((i, _))) => {
            active.forwarded[i].inc();
        }
        (outcome, _) => s.metrics.inbound(name, outcome.unwrap_or_else(passing)),
    }
    debug!(
        %method,
        route = name,
        outcome = outcome.unwrap_or_else(passing),
        status = status.as_u16(),
        "forwarded"
    );
}
