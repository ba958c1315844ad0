//! Live delivery to connected clients. After replies are committed, the engine publishes them
//! here; a chat socket subscribes to its dialog. The hub is only a fast path: the messages are
//! already stored, and a client that misses one gets it from storage when it (re)connects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herald_store::{DialogKey, StoredMessage};
use tokio::sync::broadcast;

#[derive(Default)]
pub struct Hub {
    dialogs: Mutex<HashMap<DialogKey, broadcast::Sender<Arc<StoredMessage>>>>,
}

impl Hub {
    pub fn subscribe(&self, key: &DialogKey) -> broadcast::Receiver<Arc<StoredMessage>> {
        let mut map = self.dialogs.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| broadcast::channel(256).0)
            .subscribe()
    }

    /// Forgets a dialog nobody listens to any more (called when a socket closes).
    pub fn prune(&self, key: &DialogKey) {
        let mut map = self.dialogs.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(key).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(key);
        }
    }

    pub fn publish(&self, key: &DialogKey, messages: &[StoredMessage]) {
        if messages.is_empty() {
            return;
        }
        let mut map = self.dialogs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = map.get(key) else { return };
        if tx.receiver_count() == 0 {
            map.remove(key);
            return;
        }
        for m in messages {
            let _ = tx.send(Arc::new(m.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(hub: &Hub) -> usize {
        hub.dialogs.lock().map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn a_dialog_is_forgotten_when_its_last_listener_leaves() {
        let hub = Hub::default();
        let key = DialogKey::new("chatwidget", "bot", "c1");
        let first = hub.subscribe(&key);
        let second = hub.subscribe(&key);
        drop(first);
        hub.prune(&key);
        assert_eq!(len(&hub), 1, "one listener is still there");
        drop(second);
        hub.prune(&key);
        assert_eq!(len(&hub), 0);
    }
}
