//! The lifetime timers: what is due for a microVM at a given instant, and
//! the record of ingress activity that idleness is counted from.
//!
//! [`due`] is a pure function of a microVM's record, the time and its last
//! activity, so the rules are tested with a clock the test sets. The hard
//! lifetime (`maximumDurationInSeconds`) counts from `startedAt` and
//! includes suspended time; `suspendedDurationSeconds` counts from the
//! moment the microVM became SUSPENDED; `maxIdleDurationSeconds` counts
//! from the later of the last activity and the moment it became RUNNING.
//! Activity lives in memory: after a restart idleness counts from the
//! restart, so a restart never suspends a microVM early.

use std::collections::HashMap;
use std::sync::Mutex;

use hearth_api::model::MicrovmState;

use super::lock;
use super::microvms::DEFAULT_MAXIMUM_DURATION_SECONDS;
use crate::store::MicrovmRow;

/// What a timer does to a microVM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimerAction {
    /// Terminate it, with this `stateReason`.
    Terminate(&'static str),
    /// Suspend it, with this `stateReason`.
    Suspend(&'static str),
}

/// When each microVM last carried ingress traffic, in Unix milliseconds.
// Limitation: kept in memory only, so after a restart idleness counts from
// the restart; persist it with the microVM to count across restarts.
#[derive(Debug, Default)]
pub(super) struct Activity {
    last: Mutex<HashMap<String, i64>>,
}

impl Activity {
    /// Notes activity on microVM `id` at `now_ms`; an older note than the
    /// one kept changes nothing.
    pub(super) fn record(&self, id: &str, now_ms: i64) {
        let mut last = lock(&self.last);
        let entry = last.entry(id.to_owned()).or_insert(now_ms);
        *entry = (*entry).max(now_ms);
    }

    /// The last activity on microVM `id`.
    pub(super) fn last(&self, id: &str) -> Option<i64> {
        lock(&self.last).get(id).copied()
    }

    /// Forgets a microVM that ended.
    pub(super) fn forget(&self, id: &str) {
        lock(&self.last).remove(id);
    }
}

/// What is due for `row` at `now_ms`, given its last activity.
pub(super) fn due(
    row: &MicrovmRow,
    now_ms: i64,
    last_activity_ms: Option<i64>,
) -> Option<TimerAction> {
    let live = matches!(
        row.state,
        MicrovmState::Pending
            | MicrovmState::Running
            | MicrovmState::Suspending
            | MicrovmState::Suspended
    );
    if !live {
        return None;
    }
    let limit = row
        .request
        .maximum_duration_in_seconds
        .unwrap_or(DEFAULT_MAXIMUM_DURATION_SECONDS);
    if now_ms - row.started_at.unix_millis() >= seconds(limit) {
        return Some(TimerAction::Terminate("MAXIMUM_DURATION_REACHED"));
    }

    let policy = row.request.idle_policy?;
    let since_change = row.updated_at.unwrap_or(row.started_at).unix_millis();
    match row.state {
        MicrovmState::Suspended
            if now_ms - since_change >= seconds(policy.suspended_duration_seconds) =>
        {
            Some(TimerAction::Terminate("SUSPENDED_DURATION_REACHED"))
        }
        MicrovmState::Running => {
            let idle_since = last_activity_ms.map_or(since_change, |t| t.max(since_change));
            (now_ms - idle_since >= seconds(policy.max_idle_duration_seconds))
                .then_some(TimerAction::Suspend("IDLE_TIMEOUT"))
        }
        _ => None,
    }
}

/// Seconds as milliseconds.
fn seconds(s: i32) -> i64 {
    i64::from(s) * 1000
}

#[cfg(test)]
mod tests {
    use hearth_api::model::{IdlePolicy, RunMicrovmRequest, Timestamp};

    use super::*;
    use crate::ids::MicrovmId;

    const T0: i64 = 1_800_000_000_000;

    fn row(state: MicrovmState, changed_at: i64, request: serde_json::Value) -> MicrovmRow {
        let request: RunMicrovmRequest = serde_json::from_value(request).expect("request");
        MicrovmRow {
            microvm_id: MicrovmId::generate(),
            image_id: 1,
            image_arn: "arn".to_owned(),
            image_version: 1,
            state,
            state_reason: None,
            request,
            endpoint: String::new(),
            guest_memory_mib: 256,
            started_at: Timestamp::from_unix_millis(T0),
            terminated_at: None,
            updated_at: Some(Timestamp::from_unix_millis(changed_at)),
            suspended_snapshot: None,
        }
    }

    fn idle(max_idle: i32, suspended: i32) -> serde_json::Value {
        serde_json::json!({
            "imageIdentifier": "app",
            "idlePolicy": {
                "maxIdleDurationSeconds": max_idle,
                "suspendedDurationSeconds": suspended,
                "autoResumeEnabled": true,
            },
        })
    }

    #[test]
    fn the_hard_lifetime_counts_suspended_time() {
        let request =
            serde_json::json!({"imageIdentifier": "app", "maximumDurationInSeconds": 600});
        let suspended = row(MicrovmState::Suspended, T0 + 10_000, request);
        assert_eq!(due(&suspended, T0 + 599_999, None), None);
        assert_eq!(
            due(&suspended, T0 + 600_000, None),
            Some(TimerAction::Terminate("MAXIMUM_DURATION_REACHED"))
        );
    }

    #[test]
    fn the_default_lifetime_is_eight_hours() {
        let running = row(
            MicrovmState::Running,
            T0,
            serde_json::json!({"imageIdentifier": "app"}),
        );
        assert_eq!(due(&running, T0 + 28_799_999, None), None);
        assert!(matches!(
            due(&running, T0 + 28_800_000, None),
            Some(TimerAction::Terminate(_))
        ));
    }

    #[test]
    fn a_running_microvm_without_traffic_suspends_after_its_idle_time() {
        let running = row(MicrovmState::Running, T0 + 5_000, idle(60, 300));
        assert_eq!(due(&running, T0 + 64_999, None), None);
        assert_eq!(
            due(&running, T0 + 65_000, None),
            Some(TimerAction::Suspend("IDLE_TIMEOUT"))
        );
    }

    #[test]
    fn activity_postpones_the_idle_suspend() {
        let running = row(MicrovmState::Running, T0, idle(60, 300));
        let activity = Activity::default();
        let id = running.microvm_id.as_str();
        activity.record(id, T0 + 50_000);
        activity.record(id, T0 + 40_000);
        assert_eq!(activity.last(id), Some(T0 + 50_000));
        assert_eq!(due(&running, T0 + 109_999, activity.last(id)), None);
        assert_eq!(
            due(&running, T0 + 110_000, activity.last(id)),
            Some(TimerAction::Suspend("IDLE_TIMEOUT"))
        );
        activity.forget(id);
        assert_eq!(activity.last(id), None);
    }

    #[test]
    fn activity_before_a_resume_does_not_count_against_it() {
        let resumed = row(MicrovmState::Running, T0 + 1_000_000, idle(60, 300));
        assert_eq!(due(&resumed, T0 + 1_030_000, Some(T0)), None);
    }

    #[test]
    fn a_suspended_microvm_terminates_after_its_suspended_duration() {
        let suspended = row(MicrovmState::Suspended, T0 + 100_000, idle(60, 300));
        assert_eq!(due(&suspended, T0 + 399_999, None), None);
        assert_eq!(
            due(&suspended, T0 + 400_000, None),
            Some(TimerAction::Terminate("SUSPENDED_DURATION_REACHED"))
        );
        let at_once = row(MicrovmState::Suspended, T0 + 100_000, idle(60, 0));
        assert!(due(&at_once, T0 + 100_000, None).is_some());
    }

    #[test]
    fn microvms_between_states_or_ended_are_left_to_their_tasks() {
        let suspending = row(MicrovmState::Suspending, T0, idle(60, 0));
        assert_eq!(due(&suspending, T0 + 1_000_000, None), None);
        let terminated = row(MicrovmState::Terminated, T0, idle(60, 0));
        assert_eq!(due(&terminated, T0 + 100_000_000, None), None);
    }

    #[test]
    fn without_an_idle_policy_only_the_lifetime_applies() {
        let running = row(
            MicrovmState::Running,
            T0,
            serde_json::json!({"imageIdentifier": "app"}),
        );
        assert_eq!(due(&running, T0 + 10_000_000, None), None);
        let policy: Option<IdlePolicy> = running.request.idle_policy;
        assert!(policy.is_none());
    }
}
