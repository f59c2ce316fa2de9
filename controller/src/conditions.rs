//! Standard conditions with stable `lastTransitionTime`.

use gastown_crds::{Condition, ConditionStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Sets (or adds) the condition of type `type_`; `lastTransitionTime` changes only when the
/// status changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
    generation: Option<i64>,
) {
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Time(now);
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time: Time(now),
            observed_generation: generation,
        }),
    }
}

/// Like [`set`], but `lastTransitionTime` becomes `now` even when the status stays: for a
/// condition whose transition time records when an attempt began (the `Claimed=Unknown` mark of
/// a `bd create`, see `decision::create_gate`), each new attempt is a new transition.
pub fn set_started(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    now: Timestamp,
    generation: Option<i64>,
) {
    set(conditions, type_, status, reason, message, now, generation);
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        c.last_transition_time = Time(now);
    }
}

/// The condition of type `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_stable_while_status_holds() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut c = Vec::new();
        set(&mut c, "Dispatched", ConditionStatus::True, "Slung", "a", t0, Some(1));
        set(&mut c, "Dispatched", ConditionStatus::True, "Slung", "b", t1, Some(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(t0));
        assert_eq!(c[0].message, "b");
        set(&mut c, "Dispatched", ConditionStatus::False, "Gone", "c", t1, Some(2));
        assert_eq!(c[0].last_transition_time, Time(t1));
        assert_eq!(get(&c, "Dispatched").map(|c| c.status), Some(ConditionStatus::False));
    }

    #[test]
    fn set_started_moves_the_transition_time_for_each_attempt() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut c = Vec::new();
        set_started(
            &mut c,
            "Claimed",
            ConditionStatus::Unknown,
            "CreatingBead",
            "",
            t0,
            Some(1),
        );
        set_started(
            &mut c,
            "Claimed",
            ConditionStatus::Unknown,
            "CreatingBead",
            "",
            t1,
            Some(1),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(t1));
    }
}
