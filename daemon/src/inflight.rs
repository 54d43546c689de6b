//! One operation per volume at a time inside this daemon: a second
//! request for a volume that is being mounted or unmounted is answered
//! `busy` at once instead of queueing behind the engine's lock (a client
//! retrying on timeout would otherwise pile up blocked threads). The count
//! of running operations is watched so shutdown can wait for them.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

/// The volumes with an operation running.
#[derive(Clone)]
pub struct InFlight {
    inner: Arc<Inner>,
}

struct Inner {
    names: Mutex<HashSet<String>>,
    count: watch::Sender<usize>,
}

/// Held while an operation on one volume runs; dropping it frees the volume.
pub struct Slot {
    inner: Arc<Inner>,
    name: String,
}

impl Default for InFlight {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                names: Mutex::new(HashSet::new()),
                count: watch::Sender::new(0),
            }),
        }
    }
}

impl InFlight {
    /// Takes `name`'s slot, or `None` when an operation on it is running.
    pub fn try_take(&self, name: &str) -> Option<Slot> {
        let mut names = self
            .inner
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !names.insert(name.to_string()) {
            return None;
        }
        self.inner.count.send_replace(names.len());
        Some(Slot {
            inner: self.inner.clone(),
            name: name.to_string(),
        })
    }

    /// How many operations are running.
    pub fn len(&self) -> usize {
        *self.inner.count.borrow()
    }

    /// True when none is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until no operation runs, at most `limit`; true when none does.
    pub async fn drained(&self, limit: Duration) -> bool {
        let mut rx = self.inner.count.subscribe();
        let done = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        done
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut names = self
            .inner
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        names.remove(&self.name);
        self.inner.count.send_replace(names.len());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn a_second_take_is_refused_until_the_first_is_dropped() {
        let f = InFlight::default();
        let a = f.try_take("v1").unwrap();
        assert!(f.try_take("v1").is_none());
        let b = f.try_take("v2").unwrap();
        assert_eq!(f.len(), 2);
        assert!(!f.drained(Duration::from_millis(20)).await);
        drop(a);
        assert!(f.try_take("v1").is_some(), "freed (and dropped again)");
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.drained(Duration::from_secs(5)).await }
        });
        drop(b);
        assert!(waiter.await.unwrap());
        assert!(f.is_empty());
    }
}
