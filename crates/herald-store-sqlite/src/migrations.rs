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
//!
//! Notifications (migration 3) follow the same rule: the executor's claim reads a partial index
//! of pending runs' due times, the outbox a partial index of pending deliveries. Subscribers are
//! contacts with a `subscriber_id`, their profile inside `attributes`. `digests` holds only open
//! digests (one leader run each), so joining one is a primary-key lookup.

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
    (
        3,
        r#"
-- NULL: never updated since created_at.
ALTER TABLE contacts ADD COLUMN updated_at INTEGER;

CREATE TABLE topics (
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE topic_members (
    topic_id   INTEGER NOT NULL REFERENCES topics(id),
    contact_id INTEGER NOT NULL REFERENCES contacts(id),
    PRIMARY KEY (topic_id, contact_id)
) WITHOUT ROWID;
CREATE INDEX topic_members_contact ON topic_members(contact_id);

CREATE TABLE notifications (
    id             INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL UNIQUE,
    workflow       TEXT NOT NULL,
    payload        TEXT NOT NULL,
    overrides      TEXT NOT NULL,
    -- JSON: {subscriberId, ...profile}
    actor          TEXT,
    tenant         TEXT,
    runs           INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE notification_runs (
    id              INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications(id),
    contact_id      INTEGER NOT NULL,
    step            INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    next_at         INTEGER,
    -- Set on a run that led (or leads) a digest of this key.
    digest_key      TEXT,
    -- The leader whose digest this run joined.
    digest_of       INTEGER,
    -- JSON array of step records.
    steps           TEXT NOT NULL DEFAULT '[]',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
-- The executor's only query on the hot path: the earliest pending due times.
CREATE INDEX runs_due ON notification_runs(next_at) WHERE status = 'pending';
CREATE INDEX runs_notification ON notification_runs(notification_id);
CREATE INDEX runs_digest_of ON notification_runs(digest_of) WHERE digest_of IS NOT NULL;

-- Open digests only: a row goes when its leader is claimed.
CREATE TABLE digests (
    key       TEXT PRIMARY KEY,
    leader    INTEGER NOT NULL,
    closes_at INTEGER NOT NULL
) WITHOUT ROWID;

-- The last time a run reached a digest step of each key (for look-back windows).
CREATE TABLE digest_seen (
    key     TEXT PRIMARY KEY,
    last_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE throttle_hits (
    key TEXT NOT NULL,
    at  INTEGER NOT NULL
);
CREATE INDEX throttle_hits_key ON throttle_hits(key, at);

CREATE TABLE feed (
    id              INTEGER PRIMARY KEY,
    contact_id      INTEGER NOT NULL,
    notification_id INTEGER NOT NULL REFERENCES notifications(id),
    run_id          INTEGER NOT NULL,
    step            TEXT NOT NULL,
    subject         TEXT,
    body            TEXT NOT NULL,
    cta             TEXT,
    seen            INTEGER NOT NULL DEFAULT 0,
    read            INTEGER NOT NULL DEFAULT 0,
    seen_at         INTEGER,
    read_at         INTEGER,
    created_at      INTEGER NOT NULL
);
CREATE INDEX feed_contact ON feed(contact_id, id);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL,
    run_id          INTEGER,
    step            TEXT NOT NULL,
    request         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE status = 'pending';
"#,
    ),
    (
        4,
        // Retention: a notification goes only when no feed entry refers to it. Feed entries of
        // one notification are inserted together and notification ids grow, so this index is
        // appended to at its right edge.
        r#"
CREATE INDEX feed_notification ON feed(notification_id);
"#,
    ),
    (
        5,
        // Messages as per-dialog chains (see `chain.rs`): the `messages_dialog` index, one
        // random leaf page written per message, gives way to a back pointer in each message, the
        // chain's end in the dialog row (written per handled event anyway) and an anchor every
        // 64th message of a dialog. Existing messages are chained in id order.
        r#"
ALTER TABLE dialogs ADD COLUMN last_message_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE dialogs ADD COLUMN message_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN prev_id INTEGER NOT NULL DEFAULT 0;

CREATE TABLE message_anchors (
    dialog_id INTEGER NOT NULL,
    id        INTEGER NOT NULL,
    PRIMARY KEY (dialog_id, id)
) WITHOUT ROWID;

-- Each step is a seek per row on the old index, so memory stays flat however many
-- messages there are; the window function's partitions are single dialogs.
UPDATE messages SET prev_id = COALESCE(
    (SELECT MAX(p.id) FROM messages p WHERE p.dialog_id = messages.dialog_id AND p.id < messages.id),
    0);
INSERT INTO message_anchors (dialog_id, id)
SELECT dialog_id, id FROM (
    SELECT dialog_id, id, ROW_NUMBER() OVER (PARTITION BY dialog_id ORDER BY id) AS n
    FROM messages
    WHERE dialog_id IN (SELECT id FROM dialogs)
)
WHERE n % 64 = 0;
UPDATE dialogs SET
    last_message_id = COALESCE((SELECT MAX(id) FROM messages WHERE dialog_id = dialogs.id), 0),
    message_count = (SELECT COUNT(*) FROM messages WHERE dialog_id = dialogs.id);

DROP INDEX IF EXISTS messages_dialog;
"#,
    ),
    (
        6,
        // Integration requests (SPEC §7): the log, appended per request (ids grow, so the
        // per-integration index is written at its right edge), and the delivery ids seen
        // within their dedupe window, looked up by primary key.
        r#"
CREATE TABLE ingest_requests (
    id          INTEGER PRIMARY KEY,
    integration TEXT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT,
    detail      TEXT NOT NULL DEFAULT 'null',
    delivery_id TEXT,
    event_ids   TEXT NOT NULL DEFAULT '[]',
    method      TEXT NOT NULL,
    path        TEXT NOT NULL,
    headers     TEXT NOT NULL,
    body        BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    replay_of   INTEGER
);
CREATE INDEX ingest_requests_integration ON ingest_requests(integration, id);

CREATE TABLE ingest_deliveries (
    integration TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    request_id  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (integration, delivery_id)
) WITHOUT ROWID;
-- Expiry times grow with time: this index is appended to at its right edge, and lets the
-- purge find expired ids without scanning the table.
CREATE INDEX ingest_deliveries_expiry ON ingest_deliveries(expires_at);
"#,
    ),
];
