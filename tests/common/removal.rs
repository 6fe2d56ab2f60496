//! Watching sessions end: session-removed listeners that record why and when, and waits for
//! expiry on paused time.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tower_bayeux::{Bayeux, RemoveReason, ServerSession};

/// One session's removal, as its listener saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    pub client_id: String,
    pub reason: RemoveReason,
    pub at: Instant,
}

/// Records the removals of the sessions it watches, in the order their listeners ran.
#[derive(Clone)]
pub struct Removals(Arc<watch::Sender<Vec<Removed>>>);

impl Default for Removals {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(Vec::new())))
    }
}

impl Removals {
    /// Adds a session-removed listener to `session` that records its removal here.
    pub fn watch(&self, session: &ServerSession) {
        let log = self.0.clone();
        session.on_removed(move |session, reason| async move {
            let removed = Removed {
                client_id: session.id().to_owned(),
                reason,
                at: Instant::now(),
            };
            log.send_modify(|log| log.push(removed));
        });
    }

    /// Watches the live session `client_id` of `bayeux`.
    pub fn watch_id(&self, bayeux: &Bayeux, client_id: &str) {
        self.watch(&bayeux.session(client_id).expect("a live session"));
    }

    /// Every removal recorded so far.
    pub fn all(&self) -> Vec<Removed> {
        self.0.borrow().clone()
    }

    /// The reasons recorded so far, in order.
    pub fn reasons(&self) -> Vec<RemoveReason> {
        self.all().into_iter().map(|r| r.reason).collect()
    }

    /// The removal of `client_id`, if recorded.
    pub fn of(&self, client_id: &str) -> Option<Removed> {
        self.all().into_iter().find(|r| r.client_id == client_id)
    }

    /// Waits for the removal of `client_id` (failing after an hour of paused time).
    pub async fn wait(&self, client_id: &str) -> Removed {
        let mut log = self.0.subscribe();
        let wait = log.wait_for(|log| log.iter().any(|r| r.client_id == client_id));
        tokio::time::timeout(Duration::from_secs(3600), wait)
            .await
            .unwrap_or_else(|_| panic!("{client_id} was not removed within an hour"))
            .unwrap();
        self.of(client_id).unwrap()
    }
}

/// A listener on one session's removal.
pub struct Removal {
    removals: Removals,
    client_id: String,
}

impl Removal {
    /// The session's reason for removal, if it is removed already (and its listener ran).
    pub fn reason(&self) -> Option<RemoveReason> {
        self.removals.of(&self.client_id).map(|r| r.reason)
    }

    /// Waits for the removal; returns the reason and the instant its listener ran.
    pub async fn wait(&self) -> (RemoveReason, Instant) {
        let removed = self.removals.wait(&self.client_id).await;
        (removed.reason, removed.at)
    }

    /// Asserts the session expires (reason [`RemoveReason::Timeout`]) within `window` after
    /// `since`.
    pub async fn assert_expires(&self, since: Instant, window: RangeInclusive<Duration>) {
        let (reason, at) = self.wait().await;
        assert_eq!(reason, RemoveReason::Timeout);
        let lived = at - since;
        assert!(
            window.contains(&lived),
            "expired after {lived:?}, not in {window:?}"
        );
    }
}

/// Watches the removal of `session`.
pub fn on_removed(session: &ServerSession) -> Removal {
    let removals = Removals::default();
    removals.watch(session);
    Removal {
        removals,
        client_id: session.id().to_owned(),
    }
}

/// Watches the removal of the live session `client_id` of `bayeux`.
pub fn removal_of(bayeux: &Bayeux, client_id: &str) -> Removal {
    on_removed(&bayeux.session(client_id).expect("a live session"))
}

/// Sleeps `until`, checking the session `client_id` is still there, then `past` more, checking
/// it has expired.
pub async fn assert_lives_then_expires(
    bayeux: &Bayeux,
    client_id: &str,
    until: Duration,
    past: Duration,
) {
    tokio::time::sleep(until).await;
    assert!(
        bayeux.session(client_id).is_some(),
        "{client_id} still lives after {until:?}"
    );
    tokio::time::sleep(past).await;
    assert!(
        bayeux.session(client_id).is_none(),
        "{client_id} expired {past:?} later"
    );
}
