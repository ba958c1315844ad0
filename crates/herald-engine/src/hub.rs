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
