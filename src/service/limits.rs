//! Bounds on work one tenant (or one client address) may have running at once, so that slow
//! work a user can start — connection tests against a server that never answers, acknowledgement
//! polls — cannot take capacity that everyone else needs. Beyond its bound a caller is told to
//! come back (429 with `Retry-After`) instead of queueing.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Counts of work in progress per key, each at most `max`.
#[derive(Debug)]
pub struct KeyedLimit<K: Eq + Hash> {
    max: usize,
    counts: Mutex<HashMap<K, usize>>,
}

/// A place taken in a [`KeyedLimit`]; given back on drop.
#[derive(Debug)]
pub struct Place<K: Eq + Hash + Clone> {
    limit: Arc<KeyedLimit<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> KeyedLimit<K> {
    /// At most `max` at once per key.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for `key`, or None when `key` already has `max` in progress.
    pub fn try_enter(self: &Arc<Self>, key: K) -> Option<Place<K>> {
        let mut counts = match self.counts.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = counts.entry(key.clone()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Place {
            limit: self.clone(),
            key,
        })
    }

    /// Work in progress for `key`.
    pub fn in_progress(&self, key: &K) -> usize {
        self.counts
            .lock()
            .map(|c| c.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for Place<K> {
    fn drop(&mut self) {
        let mut counts = match self.limit.counts.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_per_key_and_given_back() {
        let limit = KeyedLimit::new(2);
        let a1 = limit.try_enter("a").unwrap();
        let _a2 = limit.try_enter("a").unwrap();
        assert!(limit.try_enter("a").is_none());
        let _b = limit.try_enter("b").unwrap();
        drop(a1);
        assert_eq!(limit.in_progress(&"a"), 1);
        assert!(limit.try_enter("a").is_some());
        assert_eq!(limit.in_progress(&"c"), 0);
    }
}
