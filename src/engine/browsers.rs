//! Per-browser accounting: how many sessions each browser has, and which of them hold a
//! long-poll, so that one browser's tabs cannot exhaust its few HTTP connections
//! (`max_sessions_per_browser`) or open sessions without end (`max_sessions_per_cookie`).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// One browser's sessions and held connects.
#[derive(Default)]
struct BrowserState {
    sessions: usize,
    /// `(session id, connect generation)` of the held connects.
    holding: Vec<(Arc<str>, u64)>,
}

impl BrowserState {
    fn is_unused(&self) -> bool {
        self.sessions == 0 && self.holding.is_empty()
    }
}

/// Every browser with live sessions or held connects.
pub(crate) struct Browsers {
    table: Mutex<HashMap<Arc<str>, BrowserState>>,
    max_sessions: Option<usize>,
    max_holding: Option<usize>,
}

impl Browsers {
    pub(crate) fn new(max_sessions: Option<usize>, max_holding: Option<usize>) -> Self {
        Self {
            table: Mutex::default(),
            max_sessions,
            max_holding,
        }
    }

    /// How many browsers are known now.
    pub(crate) fn len(&self) -> usize {
        self.table.lock().len()
    }

    /// Counts a new session of `browser`; `false` if the browser has as many as allowed.
    pub(crate) fn add_session(&self, browser: &Arc<str>) -> bool {
        let mut table = self.table.lock();
        let entry = table.entry(browser.clone()).or_default();
        if self.max_sessions.is_some_and(|max| entry.sessions >= max) {
            if entry.is_unused() {
                table.remove(browser);
            }
            return false;
        }
        entry.sessions += 1;
        true
    }

    /// Forgets a removed session of `browser`.
    pub(crate) fn remove_session(&self, browser: &Arc<str>) {
        let mut table = self.table.lock();
        if let Some(entry) = table.get_mut(browser) {
            entry.sessions = entry.sessions.saturating_sub(1);
            if entry.is_unused() {
                table.remove(browser);
            }
        }
    }

    /// Claims a long-poll for `session` within its browser's limit. A session that already
    /// holds one keeps its place (its new connect displaces the old).
    pub(crate) fn try_hold(&self, browser: &Arc<str>, session: &Arc<str>, generation: u64) -> bool {
        let Some(max) = self.max_holding else {
            // Nothing to count: keep the shared lock off the connect path.
            return true;
        };
        let mut table = self.table.lock();
        let entry = table.entry(browser.clone()).or_default();
        if let Some(held) = entry.holding.iter_mut().find(|(id, _)| id == session) {
            held.1 = generation;
            return true;
        }
        if entry.holding.len() >= max {
            return false;
        }
        entry.holding.push((session.clone(), generation));
        true
    }

    /// Releases the long-poll claimed by connect `generation` of `session`, if still its own.
    pub(crate) fn release_hold(&self, browser: &Arc<str>, session: &Arc<str>, generation: u64) {
        if self.max_holding.is_none() {
            return;
        }
        let mut table = self.table.lock();
        if let Some(entry) = table.get_mut(browser) {
            entry
                .holding
                .retain(|(id, held)| !(id == session && *held == generation));
            if entry.is_unused() {
                table.remove(browser);
            }
        }
    }
}
