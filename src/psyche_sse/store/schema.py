"""The database schema, as a list of migration steps.

``PRAGMA user_version`` is the number of steps applied. To change the schema, append a step;
never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions, rounds, turns.
    """
    CREATE TABLE sessions (
        id        TEXT PRIMARY KEY,
        title     TEXT NOT NULL DEFAULT '',
        created   TEXT NOT NULL,
        updated   TEXT NOT NULL,
        -- No event id above this was ever published: a restarted session numbers after it.
        event_hwm INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_update ON sessions (updated);

    CREATE TABLE rounds (
        id          TEXT PRIMARY KEY,
        session_id  TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        idx         INTEGER NOT NULL,
        situation   TEXT NOT NULL,
        stimulus    TEXT,
        status      TEXT NOT NULL,  -- running | ok | error | cancelled | interrupted
        started     TEXT NOT NULL,
        finished    TEXT,
        duration_ms INTEGER
    );
    CREATE INDEX rounds_by_session ON rounds (session_id, idx);

    CREATE TABLE turns (
        id                TEXT PRIMARY KEY,
        round_id          TEXT NOT NULL REFERENCES rounds (id) ON DELETE CASCADE,
        session_id        TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        position          INTEGER NOT NULL,
        agent_id          TEXT NOT NULL,
        agent_type        TEXT NOT NULL DEFAULT '',
        status            TEXT NOT NULL,  -- running | ok | error | cancelled | interrupted
        text              TEXT NOT NULL DEFAULT '',
        reasoning         TEXT,
        sentiment         TEXT,  -- JSON
        model             TEXT,
        streaming         TEXT,
        usage             TEXT,  -- JSON
        interaction_count INTEGER NOT NULL DEFAULT 0,
        has_memory        INTEGER NOT NULL DEFAULT 0,
        -- The reply is part of the agent's memory (the council's rule: ok, or any text).
        remembered        INTEGER NOT NULL DEFAULT 0,
        started           TEXT NOT NULL,
        finished          TEXT,
        duration_ms       INTEGER,
        first_token_ms    INTEGER,
        error             TEXT,
        error_class       TEXT
    );
    CREATE INDEX turns_by_round ON turns (round_id, position);
    CREATE INDEX turns_by_session ON turns (session_id, agent_id);
    CREATE INDEX turns_running ON turns (status) WHERE status = 'running';
    """,
    # 2: the simulation: where a round's situation left off, the conversation's state after
    # it, and whom each turn heard with the guidance it was given.
    """
    ALTER TABLE rounds ADD COLUMN left_off TEXT;
    ALTER TABLE rounds ADD COLUMN state TEXT;  -- JSON: metrics, guidance, emergency
    ALTER TABLE rounds ADD COLUMN run_index INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE rounds ADD COLUMN run_rounds INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE turns ADD COLUMN heard TEXT;  -- JSON: [{agent_id, emergency}]
    ALTER TABLE turns ADD COLUMN guidance TEXT;  -- JSON: [line]
    """,
    # 3: accounts. Users, their API tokens, who owns each session (NULL: made with no
    # accounts; the first user created adopts those), and what the server watches to see
    # accounts change (``generation``, bumped by every accounts write) and its signing key.
    """
    CREATE TABLE users (
        id       INTEGER PRIMARY KEY,
        name     TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password TEXT NOT NULL,  -- an argon2 hash
        admin    INTEGER NOT NULL DEFAULT 0,
        created  TEXT NOT NULL,
        -- Bumped by signing out everywhere and by a new password: older cookies stop working.
        epoch    INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE api_tokens (
        id        INTEGER PRIMARY KEY,
        name      TEXT NOT NULL,
        user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        hash      TEXT NOT NULL,  -- sha256 of the token's secret, hex
        created   TEXT NOT NULL,
        last_used TEXT,
        revoked   TEXT
    );
    CREATE INDEX api_tokens_by_user ON api_tokens (user_id);

    ALTER TABLE sessions ADD COLUMN owner INTEGER REFERENCES users (id) ON DELETE SET NULL;
    CREATE INDEX sessions_by_owner ON sessions (owner, updated);

    CREATE TABLE accounts_state (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL,
        secret     TEXT  -- the cookie signing key, when PSYCHE_SECRET_KEY is not set
    );
    INSERT INTO accounts_state (id, generation) VALUES (1, 0);
    """,
    # 4: cost: what each turn cost in US dollars (NULL: unknown), and why a round stopped
    # early (its budget).
    """
    ALTER TABLE turns ADD COLUMN cost_usd REAL;
    ALTER TABLE rounds ADD COLUMN reason TEXT;
    """,
    # 5: full-text search over situations, stimuli and replies, and links that share one
    # session read-only.
    #
    # ``search_text`` (FTS5) holds a copy of each text, kept in step by the triggers below;
    # ``search_refs`` says which of its rows holds what ('situation:<round id>',
    # 'stimulus:<round id>', 'turn:<turn id>'): its rowids are stable, where those of
    # ``rounds`` and ``turns`` (no INTEGER PRIMARY KEY) may change in a VACUUM. The texts
    # already stored are indexed here, numbered situations, then stimuli, then replies.
    """
    CREATE VIRTUAL TABLE search_text USING fts5 (
        body,
        session_id UNINDEXED,
        kind UNINDEXED,  -- situation | stimulus | reply
        agent_id UNINDEXED,  -- a reply's agent; NULL otherwise
        tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TABLE search_refs (
        ref TEXT PRIMARY KEY,
        doc INTEGER NOT NULL  -- the rowid in search_text
    ) WITHOUT ROWID;

    INSERT INTO search_refs (ref, doc)
        SELECT 'situation:' || id, row_number() OVER (ORDER BY rowid) FROM rounds;
    INSERT INTO search_refs (ref, doc)
        SELECT 'stimulus:' || id,
               (SELECT count(*) FROM rounds) + row_number() OVER (ORDER BY rowid)
        FROM rounds WHERE stimulus IS NOT NULL;
    INSERT INTO search_refs (ref, doc)
        SELECT 'turn:' || id,
               2 * (SELECT count(*) FROM rounds) + row_number() OVER (ORDER BY rowid)
        FROM turns;
    INSERT INTO search_text (rowid, body, session_id, kind, agent_id)
        SELECT f.doc, r.situation, r.session_id, 'situation', NULL
        FROM rounds r JOIN search_refs f ON f.ref = 'situation:' || r.id;
    INSERT INTO search_text (rowid, body, session_id, kind, agent_id)
        SELECT f.doc, r.stimulus, r.session_id, 'stimulus', NULL
        FROM rounds r JOIN search_refs f ON f.ref = 'stimulus:' || r.id;
    INSERT INTO search_text (rowid, body, session_id, kind, agent_id)
        SELECT f.doc, t.text, t.session_id, 'reply', t.agent_id
        FROM turns t JOIN search_refs f ON f.ref = 'turn:' || t.id;

    CREATE TRIGGER search_round_added AFTER INSERT ON rounds BEGIN
        INSERT INTO search_text (body, session_id, kind) VALUES
            (new.situation, new.session_id, 'situation');
        INSERT INTO search_refs (ref, doc) VALUES ('situation:' || new.id, last_insert_rowid());
    END;
    CREATE TRIGGER search_stimulus_added AFTER INSERT ON rounds
    WHEN new.stimulus IS NOT NULL BEGIN
        INSERT INTO search_text (body, session_id, kind) VALUES
            (new.stimulus, new.session_id, 'stimulus');
        INSERT INTO search_refs (ref, doc) VALUES ('stimulus:' || new.id, last_insert_rowid());
    END;
    CREATE TRIGGER search_round_removed AFTER DELETE ON rounds BEGIN
        DELETE FROM search_text WHERE rowid IN (
            SELECT doc FROM search_refs
            WHERE ref IN ('situation:' || old.id, 'stimulus:' || old.id));
        DELETE FROM search_refs WHERE ref IN ('situation:' || old.id, 'stimulus:' || old.id);
    END;
    CREATE TRIGGER search_turn_added AFTER INSERT ON turns BEGIN
        INSERT INTO search_text (body, session_id, kind, agent_id) VALUES
            (new.text, new.session_id, 'reply', new.agent_id);
        INSERT INTO search_refs (ref, doc) VALUES ('turn:' || new.id, last_insert_rowid());
    END;
    CREATE TRIGGER search_turn_changed AFTER UPDATE OF text ON turns
    WHEN new.text IS NOT old.text BEGIN
        UPDATE search_text SET body = new.text
        WHERE rowid = (SELECT doc FROM search_refs WHERE ref = 'turn:' || new.id);
    END;
    CREATE TRIGGER search_turn_removed AFTER DELETE ON turns BEGIN
        DELETE FROM search_text
        WHERE rowid = (SELECT doc FROM search_refs WHERE ref = 'turn:' || old.id);
        DELETE FROM search_refs WHERE ref = 'turn:' || old.id;
    END;

    CREATE TABLE shares (
        id         INTEGER PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        hash       TEXT NOT NULL UNIQUE,  -- sha256 of the link's token, hex
        created    TEXT NOT NULL,
        created_by INTEGER REFERENCES users (id) ON DELETE SET NULL
    );
    CREATE INDEX shares_by_session ON shares (session_id);
    """,
)

VERSION = len(MIGRATIONS)


class SchemaTooNew(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(f"schema version {found} is newer than this program's {VERSION}")
        self.found = found


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Apply the missing steps, each in its own transaction. Returns how many ran."""
    current = version(conn)
    if current > VERSION:
        raise SchemaTooNew(current)
    for number in range(current + 1, VERSION + 1):
        # executescript commits first and runs each statement; the explicit transaction
        # makes the step and its version number land together or not at all.
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\n"
                "COMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
    return VERSION - current
