//! A dialog's messages as a chain, so that storing a message writes no per-dialog index.
//!
//! `messages` is appended to at its right edge: ids grow, and a batch's messages share pages.
//! A per-dialog index (`dialog_id, id`) would add one leaf page per message at the dialog's own
//! place in the index, a different page for every dialog of a batch; under load that was more
//! than half of all pages written. Instead:
//!
//! - each message keeps `prev_id`, the id of the dialog's message before it (0 for the first);
//! - the dialog row keeps `last_message_id` and `message_count`, written in the same transaction
//!   as the messages (the row is written per handled event anyway);
//! - every [`ANCHOR_EVERY`]th message of a dialog is also an anchor in `message_anchors`
//!   (`dialog_id, id`), so one message in 64 still writes an index page.
//!
//! Reading the messages after id `X`, oldest first, walks back from an end to `X` along the
//! back pointers. The end is the anchor far enough past `X` to cover the page asked for, or the
//! chain's last message; a read of `limit` messages looks at no more than `limit + 127` of them,
//! however long the dialog is. (Replaying outgoing messages only also walks past the incoming
//! ones between them.)

use herald_store::*;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::conn::backend;
use crate::rows::message_row;

/// One message in this many of a dialog is an anchor (migration 5 placed the anchors of
/// existing messages by the same number).
const ANCHOR_EVERY: i64 = 64;

const INSERT_ANCHOR: &str = "INSERT INTO message_anchors (dialog_id, id) VALUES (?1, ?2)";
// The first anchor past an id after skipping `?3` of them.
const ANCHOR_PAST: &str =
    "SELECT id FROM message_anchors WHERE dialog_id = ?1 AND id > ?2 ORDER BY id LIMIT 1 OFFSET ?3";
const MESSAGE: &str =
    "SELECT id, direction, text, buttons, ts, prev_id FROM messages WHERE id = ?1";

/// The end of one dialog's chain, as its row holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) dialog_id: i64,
    /// The dialog's last message id (0: none yet).
    pub(crate) last: i64,
    /// How many messages the dialog has.
    pub(crate) count: i64,
}

impl Chain {
    /// Links message `id`, just inserted with `prev_id = self.last`, as the new end; adds the
    /// anchor when it is due.
    pub(crate) fn linked(&mut self, tx: &Transaction<'_>, id: i64) -> Result<()> {
        self.last = id;
        self.count += 1;
        if self.count % ANCHOR_EVERY == 0 {
            tx.prepare_cached(INSERT_ANCHOR)
                .map_err(backend)?
                .execute(params![self.dialog_id, id])
                .map_err(backend)?;
        }
        Ok(())
    }

    /// The chain of the dialog with `key`, with the id its reader acknowledged messages up to;
    /// `None` if there is no such dialog.
    pub(crate) fn find(c: &Connection, key: &DialogKey) -> Result<Option<(Self, i64)>> {
        c.prepare_cached(
            "SELECT id, last_message_id, message_count, acked_upto FROM dialogs
             WHERE channel_type = ?1 AND bot_id = ?2 AND chat_id = ?3",
        )
        .map_err(backend)?
        .query_row(params![key.channel_type, key.bot_id, key.chat_id], |r| {
            Ok((Self::from_row(r)?, r.get(3)?))
        })
        .optional()
        .map_err(backend)
    }

    /// The chain of a dialog row whose first columns are `id, last_message_id, message_count`.
    pub(crate) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            dialog_id: r.get(0)?,
            last: r.get(1)?,
            count: r.get(2)?,
        })
    }

    /// Writes the chain's end into its dialog row.
    pub(crate) fn save(&self, tx: &Transaction<'_>) -> Result<()> {
        tx.prepare_cached(
            "UPDATE dialogs SET last_message_id = ?2, message_count = ?3 WHERE id = ?1",
        )
        .map_err(backend)?
        .execute(params![self.dialog_id, self.last, self.count])
        .map_err(backend)?;
        Ok(())
    }

    /// Up to `limit` of the dialog's messages with ids above `after`, oldest first; outgoing
    /// ones only if `out_only`. Call inside a read transaction, so that the chain's end and
    /// its messages are of one snapshot.
    pub(crate) fn read(
        &self,
        c: &Connection,
        after: i64,
        limit: usize,
        out_only: bool,
    ) -> Result<Vec<StoredMessage>> {
        let mut anchor = c.prepare_cached(ANCHOR_PAST).map_err(backend)?;
        let mut message = c.prepare_cached(MESSAGE).map_err(backend)?;
        let mut out = Vec::new();
        // Ids start at 1: an `after` below 0 asks for the whole chain, as 0 does.
        let mut from = after.max(0);
        while out.len() < limit && from < self.last {
            let need = limit - out.len();
            let skip = need.div_ceil(ANCHOR_EVERY as usize) as i64;
            // Past `from`, the (k+1)th anchor with k = ⌈need / 64⌉ closes a window of at least
            // 64·k + 1 ≥ need messages, and at most 64·(k+1).
            let end: i64 = anchor
                .query_row(params![self.dialog_id, from, skip], |r| r.get(0))
                .optional()
                .map_err(backend)?
                .unwrap_or(self.last);
            let mut window = Vec::new();
            let mut id = end;
            while id > from {
                // Only kept messages are decoded.
                let (m, prev) = message
                    .query_row(params![id], |r| {
                        let keep = !out_only || r.get_ref(1)?.as_str()? == "out";
                        Ok((
                            keep.then(|| message_row(r)).transpose()?,
                            r.get::<_, i64>(5)?,
                        ))
                    })
                    .optional()
                    .map_err(backend)?
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "message {id} of dialog {} is missing from its chain",
                            self.dialog_id
                        ))
                    })?;
                if prev >= id {
                    return Err(StoreError::Corrupt(format!(
                        "message {id} of dialog {} points forward to {prev}",
                        self.dialog_id
                    )));
                }
                if let Some(m) = m {
                    window.push(m?);
                }
                id = prev;
            }
            out.extend(window.into_iter().rev().take(need));
            from = end;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::migrate_to;

    /// Messages written through the batch path: every 64th message of a dialog, and only
    /// those, is an anchor; the dialog row holds the chain's end and length.
    #[test]
    fn the_write_path_anchors_every_64th_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Connection::open(dir.path().join("new.db")).expect("open");
        migrate_to(&mut c, i64::MAX).expect("schema");
        let key = |n: usize| DialogKey::new("chatwidget", "bot", &format!("c{n}"));
        let msg = |t: String| NewMessage {
            text: t,
            buttons: vec![],
            ts: jiff::Timestamp::now(),
        };
        // Dialog 0 gets an incoming message and a reply per event, dialog 1 a reply; two
        // batches, so chains continue across commits.
        for batch in 0..2 {
            let tx = c.transaction().expect("tx");
            let handled = (0..150)
                .map(|i| HandledEvent {
                    incoming: (i % 2 == 0).then(|| msg(format!("in {batch}.{i}"))),
                    replies: vec![msg(format!("out {batch}.{i}"))],
                    ..HandledEvent::unchanged(
                        batch * 150 + i + 1,
                        key(i as usize % 2),
                        None,
                        serde_json::json!({}),
                    )
                })
                .collect();
            crate::accept::apply_batch(&mut crate::accept::Hot::new(&tx), handled).expect("apply");
            tx.commit().expect("commit");
        }
        for (n, expected) in [(0usize, 300i64), (1, 150)] {
            let (chain, _) = Chain::find(&c, &key(n)).expect("find").expect("dialog");
            assert_eq!(chain.count, expected, "dialog {n}: its length");
            let ids: Vec<i64> = chain
                .read(&c, 0, 1000, false)
                .expect("read")
                .iter()
                .map(|m| m.id)
                .collect();
            assert_eq!(ids.len() as i64, expected);
            assert_eq!(chain.last, *ids.last().expect("some"));
            let want: Vec<i64> = ids.iter().skip(63).step_by(64).copied().collect();
            let anchors: Vec<i64> = c
                .prepare("SELECT id FROM message_anchors WHERE dialog_id = ?1 ORDER BY id")
                .expect("prepare")
                .query_map([chain.dialog_id], |r| r.get(0))
                .expect("anchors")
                .collect::<rusqlite::Result<_>>()
                .expect("rows");
            assert_eq!(anchors, want, "dialog {n}: anchors at messages 64, 128, …");
        }
    }

    /// A database written before messages were chained: migration 5 chains what is there.
    #[test]
    fn migration_chains_existing_messages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Connection::open(dir.path().join("old.db")).expect("open");
        migrate_to(&mut c, 4).expect("schema 4");
        c.execute_batch(
            "INSERT INTO contacts (id, created_at) VALUES (1, 0);
             INSERT INTO dialogs (id, channel_type, bot_id, chat_id, contact_id, created_at, updated_at)
             VALUES (1, 'chatwidget', 'bot', 'a', 1, 0, 0), (2, 'chatwidget', 'bot', 'b', 1, 0, 0),
                    (3, 'chatwidget', 'bot', 'empty', 1, 0, 0);",
        )
        .expect("dialogs");
        // 300 messages: dialog 1 gets two in three, dialog 2 the rest.
        let mut written: [Vec<(i64, Direction)>; 2] = [Vec::new(), Vec::new()];
        for i in 1..=300i64 {
            let dialog = if i % 3 == 0 { 2 } else { 1 };
            let dir = if i % 2 == 0 {
                Direction::Out
            } else {
                Direction::In
            };
            c.execute(
                "INSERT INTO messages (id, dialog_id, direction, text, ts) VALUES (?1, ?2, ?3, ?4, 0)",
                params![i, dialog, if dir == Direction::In { "in" } else { "out" }, format!("m{i}")],
            )
            .expect("message");
            written[dialog as usize - 1].push((i, dir));
        }
        crate::conn::migrate_to(&mut c, i64::MAX).expect("migrate");

        for (n, written) in written.iter().enumerate() {
            let dialog_id = n as i64 + 1;
            let key = DialogKey::new("chatwidget", "bot", ["a", "b"][n]);
            let (chain, _) = Chain::find(&c, &key).expect("find").expect("dialog");
            assert_eq!(chain.dialog_id, dialog_id);
            assert_eq!(chain.count, written.len() as i64);
            assert_eq!(chain.last, written.last().expect("some").0);
            let anchors: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM message_anchors WHERE dialog_id = ?1",
                    [dialog_id],
                    |r| r.get(0),
                )
                .expect("anchors");
            assert_eq!(anchors, chain.count / ANCHOR_EVERY);
            let ids = |m: Vec<StoredMessage>| m.iter().map(|m| m.id).collect::<Vec<_>>();
            let all: Vec<i64> = written.iter().map(|w| w.0).collect();
            assert_eq!(ids(chain.read(&c, 0, 1000, false).expect("read")), all);
            for (after, limit) in [(0, 1), (0, 64), (5, 70), (150, 3), (299, 10), (300, 10)] {
                let want: Vec<i64> = all
                    .iter()
                    .copied()
                    .filter(|id| *id > after)
                    .take(limit)
                    .collect();
                assert_eq!(
                    ids(chain.read(&c, after, limit, false).expect("read")),
                    want,
                    "dialog {dialog_id}, {limit} after {after}"
                );
            }
            let out: Vec<i64> = written
                .iter()
                .filter(|w| w.0 > 100 && w.1 == Direction::Out)
                .map(|w| w.0)
                .take(40)
                .collect();
            assert_eq!(ids(chain.read(&c, 100, 40, true).expect("read out")), out);
        }
        let (empty, _) = Chain::find(&c, &DialogKey::new("chatwidget", "bot", "empty"))
            .expect("find")
            .expect("dialog");
        assert_eq!((empty.last, empty.count), (0, 0));
        assert!(empty.read(&c, 0, 10, false).expect("read").is_empty());
        let index: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'messages_dialog'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert_eq!(index, 0, "the per-dialog index is gone");
    }
}
