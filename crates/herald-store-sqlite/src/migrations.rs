//! Embedded schema migrations, run in order at start. Each version runs once, in a transaction.
//!
//! Layout choices (see docs/ARCHITECTURE.md): `events` is the append-only accept log keyed by a
//! global sequence, with no secondary index, so the hot insert path touches one b-tree at its
//! right edge. Whether an event is handled is not written per event: each dialog row, written
//! once per handled event anyway, records the last sequence handled in it (`handled_seq`; a
//! dialog's events are handled in sequence order), and `meta.handled_through` is a watermark
//! below which every event is handled, so recovery scans only the tail of the log.
//!
//! Jobs (migration 2) keep the scheduler's query on a partial index of pending due times, so
//! finished jobs and their runs cost the claim nothing.

pub const MIGRATIONS: &[(i64, &str)] = &[
    (
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
    accepted_at  INTEGER NOT NULL
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('handled_through', 0);

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
    handled_seq  INTEGER NOT NULL DEFAULT 0,
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
    ),
    (
        2,
        r#"
ALTER TABLE contacts ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';

CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    bot_id       TEXT NOT NULL,
    channel_type TEXT,
    chat_id      TEXT,
    kind         TEXT NOT NULL,
    lead_id      INTEGER,
    spec         TEXT NOT NULL,
    timing       TEXT NOT NULL,
    status       TEXT NOT NULL,
    next_run_at  INTEGER,
    source       TEXT NOT NULL,
    run_count    INTEGER NOT NULL DEFAULT 0,
    last_run_id  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
-- The scheduler's only query on the hot path: the earliest pending due times.
CREATE INDEX jobs_due ON jobs(next_run_at) WHERE status = 'pending';
CREATE INDEX jobs_bot ON jobs(bot_id, id);

CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES jobs(id),
    due_at      INTEGER NOT NULL,
    claimed_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    outcome     TEXT NOT NULL,
    condition   INTEGER,
    error       TEXT,
    dialogs     INTEGER NOT NULL DEFAULT 1,
    -- One run per due time, whatever happens.
    UNIQUE (job_id, due_at)
);
"#,
    ),
];
