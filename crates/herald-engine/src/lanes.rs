//! Which dialog a worker serves next: a pure policy; the worker supplies the time and says how
//! long each turn took.
//!
//! Each dialog's events wait in their own queue, in accept order, and a dialog is served one
//! event at a time. Dialogs take turns (round robin), so one dialog with a backlog does not hold
//! up the others. A dialog whose last turn was slow (a script that ran long, a slow `$http`
//! call, a runaway loop stopped by its budget) waits in a second lane that is served only when
//! no other dialog has work, or when its head has waited [`Lanes::max_wait`]. So a healthy dialog
//! waits for at most one slow turn — the one under way — however many hostile dialogs share its
//! worker, and a slow dialog still gets a turn at least every `max_wait`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

pub(crate) struct Lanes<K, T> {
    queues: HashMap<K, VecDeque<T>>,
    /// Dialogs with work whose last turn was not slow, in the order they became ready.
    normal: VecDeque<K>,
    /// Dialogs with work whose last turn was slow, with the time each became ready.
    slow: VecDeque<(K, Instant)>,
    /// Dialogs whose last turn was slow (with or without work now).
    marked: HashSet<K>,
    /// The dialog being served: not in a lane until [`Lanes::done`].
    serving: Option<K>,
    len: usize,
    max_wait: Duration,
}

impl<K: Hash + Eq + Clone, T> Lanes<K, T> {
    pub(crate) fn new(max_wait: Duration) -> Self {
        Self {
            queues: HashMap::new(),
            normal: VecDeque::new(),
            slow: VecDeque::new(),
            marked: HashSet::new(),
            serving: None,
            len: 0,
            max_wait,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues an event of dialog `key` behind the dialog's earlier ones.
    pub(crate) fn push(&mut self, key: K, item: T, now: Instant) {
        self.len += 1;
        let queue = self.queues.entry(key.clone()).or_default();
        queue.push_back(item);
        if queue.len() == 1 && self.serving.as_ref() != Some(&key) {
            self.ready(key, now);
        }
    }

    fn ready(&mut self, key: K, now: Instant) {
        if self.marked.contains(&key) {
            self.slow.push_back((key, now));
        } else {
            self.normal.push_back(key);
        }
    }

    /// The next event to handle, and its dialog; call [`Lanes::done`] once it is handled.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<(K, T)> {
        let starving = self
            .slow
            .front()
            .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= self.max_wait);
        let key = if starving || self.normal.is_empty() {
            self.slow.pop_front().map(|(k, _)| k)
        } else {
            self.normal.pop_front()
        }?;
        let item = self.queues.get_mut(&key).and_then(VecDeque::pop_front)?;
        self.len -= 1;
        self.serving = Some(key.clone());
        Some((key, item))
    }

    /// The event of `key` that [`Lanes::pop`] gave out is handled; `slow` says whether its
    /// turn took long. The dialog goes to the back of its lane if it has more work.
    pub(crate) fn done(&mut self, key: &K, slow: bool, now: Instant) {
        if self.serving.as_ref() == Some(key) {
            self.serving = None;
        }
        if slow {
            self.marked.insert(key.clone());
        } else {
            self.marked.remove(key);
        }
        match self.queues.get(key) {
            Some(q) if !q.is_empty() => self.ready(key.clone(), now),
            _ => {
                self.queues.remove(key);
            }
        }
        // Marks of dialogs without work are only kept while there are not too many of them.
        if self.marked.len() > 4096 && self.queues.is_empty() {
            self.marked.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn drain(l: &mut Lanes<&'static str, u32>, now: Instant, slow: &[&str]) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        while let Some((k, v)) = l.pop(now) {
            out.push((k.to_owned(), v));
            l.done(&k, slow.contains(&k), now);
        }
        out
    }

    #[test]
    fn a_dialogs_events_keep_their_order_and_dialogs_take_turns() {
        let now = Instant::now();
        let mut l = Lanes::new(WAIT);
        for (k, v) in [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1), ("b", 2)] {
            l.push(k, v, now);
        }
        let order = drain(&mut l, now, &[]);
        let pairs: Vec<(&str, u32)> = order.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            pairs,
            [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2), ("a", 3)]
        );
        assert!(l.is_empty());
    }

    #[test]
    fn a_slow_dialog_waits_until_the_others_have_no_work() {
        let now = Instant::now();
        let mut l = Lanes::new(WAIT);
        l.push("hostile", 1, now);
        l.push("hostile", 2, now);
        let (k, v) = l.pop(now).expect("first");
        assert_eq!((k, v), ("hostile", 1));
        // While its slow turn ran, a healthy dialog's event came in.
        l.push("healthy", 1, now);
        l.done(&"hostile", true, now);
        l.push("healthy", 2, now);
        let order = drain(&mut l, now, &["hostile"]);
        let keys: Vec<&str> = order.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["healthy", "healthy", "hostile"]);
    }

    #[test]
    fn a_slow_dialog_gets_a_turn_once_it_has_waited_max_wait() {
        let t0 = Instant::now();
        let mut l = Lanes::new(WAIT);
        l.push("hostile", 1, t0);
        let (k, _) = l.pop(t0).expect("hostile");
        l.done(&k, true, t0);
        l.push("hostile", 2, t0);
        l.push("healthy", 1, t0);
        assert_eq!(l.pop(t0).map(|(k, _)| k), Some("healthy"));
        l.done(&"healthy", false, t0);
        l.push("healthy", 2, t0);
        let later = t0 + WAIT;
        assert_eq!(
            l.pop(later).map(|(k, _)| k),
            Some("hostile"),
            "a slow dialog is not starved"
        );
    }

    #[test]
    fn a_fast_turn_takes_a_dialog_back_to_the_normal_lane() {
        let now = Instant::now();
        let mut l = Lanes::new(WAIT);
        l.push("d", 1, now);
        let (k, _) = l.pop(now).expect("d");
        l.done(&k, true, now);
        l.push("d", 2, now);
        l.push("e", 1, now);
        assert_eq!(l.pop(now).map(|(k, _)| k), Some("e"));
        l.done(&"e", false, now);
        let (k, _) = l.pop(now).expect("d again");
        l.done(&k, false, now);
        l.push("e", 2, now);
        l.push("d", 3, now);
        let keys: Vec<String> = drain(&mut l, now, &[])
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["e", "d"], "d is in the normal lane again, behind e");
    }
}
