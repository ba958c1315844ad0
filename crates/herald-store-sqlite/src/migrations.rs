//! Embedded schema migrations, run in order at start. Each version runs once, in a transaction.
//!
//! Layout choices (see docs/ARCHITECTURE.md): `events` is the append-only accept log keyed by a
//! global sequence; its only secondary index is a partial index over unhandled sequence numbers,
//! which grows at its right edge and shrinks as events are handled, so the hot insert path never
//! touches a per-dialog index. Per-dialog state lives in `dialogs` and is written once per
//! handled event.

pub const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL,
    channel_type TEXT NOT NULL,
    bot_id       TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    payload      TEXT NOT NULL,
    source       TEXT NOT NULL,
    accepted_at  INTEGER NOT NULL,
    handled      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_unhandled ON events(seq) WHERE handled = 0;

CREATE TABLE contacts (
    id            INTEGER PRIMARY KEY,
    subscriber_id TEXT UNIQUE,
    data          TEXT NOT NULL DEFAULT '{}',
    tags          TEXT NOT NULL DEFAULT '[]',
    created_at    INTEGER NOT NULL
);

CREATE TABLE dialogs (
    id           INTEGER PRIMARY KEY,
    channel_type TEXT NOT NULL,
    bot_id       TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    contact_id   INTEGER NOT NULL REFERENCES contacts(id),
    state        TEXT,
    session      TEXT NOT NULL DEFAULT '{}',
    acked_upto   INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (channel_type, bot_id, chat_id)
);
CREATE INDEX dialogs_contact ON dialogs(contact_id);

CREATE TABLE messages (
    id        INTEGER PRIMARY KEY,
    dialog_id INTEGER NOT NULL REFERENCES dialogs(id),
    direction TEXT NOT NULL,
    text      TEXT NOT NULL,
    buttons   TEXT NOT NULL DEFAULT '[]',
    ts        INTEGER NOT NULL
);
CREATE INDEX messages_dialog ON messages(dialog_id, id);

CREATE TABLE pushbacks (
    id           TEXT PRIMARY KEY,
    channel_type TEXT NOT NULL,
    bot_id       TEXT NOT NULL,
    chat_id      TEXT NOT NULL,
    event        TEXT NOT NULL,
    event_data   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    max_uses     INTEGER,
    uses         INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER
);
CREATE INDEX pushbacks_dialog ON pushbacks(bot_id, chat_id);

CREATE TABLE idempotency (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
"#,
)];
