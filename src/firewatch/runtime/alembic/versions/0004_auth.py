"""Users, integration API keys, refresh tokens and the hash-chained audit log.

Revision ID: 0004_auth
Revises: 0003_alerts
Create Date: 2026-11-27
"""

from firewatch.runtime.migrations import execute_script

revision = "0004_auth"
down_revision = "0003_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE users (
        id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username             text NOT NULL UNIQUE
                                 CHECK (username ~ '^[a-z0-9][a-z0-9._@-]{0,63}$'),
        role                 text NOT NULL CHECK (role IN ('admin', 'responder', 'viewer')),
        password_hash        text NOT NULL,
        disabled             boolean NOT NULL DEFAULT false,
        token_version        integer NOT NULL DEFAULT 1,
        failed_logins        integer NOT NULL DEFAULT 0,
        locked_until         timestamptz,
        created_at           timestamptz NOT NULL DEFAULT now(),
        updated_at           timestamptz NOT NULL DEFAULT now(),
        password_changed_at  timestamptz NOT NULL DEFAULT now(),
        last_login_at        timestamptz
    );

    -- Integration principals: the key is fw_<key_id>_<secret>; only SHA-256(secret)
    -- is stored (the secret is 256 random bits, so a slow hash adds nothing).
    CREATE TABLE api_keys (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key_id        text NOT NULL UNIQUE CHECK (key_id ~ '^[a-z0-9]{12}$'),
        name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
        scopes        text[] NOT NULL CHECK (cardinality(scopes) >= 1),
        secret_hash   bytea NOT NULL,
        created_by    text NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now(),
        last_used_at  timestamptz,
        revoked_at    timestamptz
    );
    CREATE UNIQUE INDEX api_keys_active_name_idx ON api_keys (name) WHERE revoked_at IS NULL;

    -- Opaque refresh tokens, stored as SHA-256; rotated on every use. A family is
    -- one login; reusing a rotated token revokes the whole family.
    CREATE TABLE refresh_tokens (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        token_hash   bytea NOT NULL UNIQUE,
        family       uuid NOT NULL,
        user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        issued_at    timestamptz NOT NULL DEFAULT now(),
        expires_at   timestamptz NOT NULL,
        rotated_at   timestamptz,
        revoked_at   timestamptz
    );
    CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);
    CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;

    -- The audit log. Entries are written unsealed inside the transaction of the change
    -- they record; the sealer appends them to the hash chain (audit_seal) in commit
    -- order. Both tables are append-only: a trigger refuses UPDATE, DELETE, TRUNCATE.
    CREATE TABLE audit_log (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at             timestamptz NOT NULL DEFAULT clock_timestamp(),
        actor          text NOT NULL,
        actor_kind     text NOT NULL,
        action         text NOT NULL,
        target         text,
        before_digest  text,
        after_digest   text,
        client         text,
        outcome        text NOT NULL DEFAULT 'ok',
        details        jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE INDEX audit_log_target_idx ON audit_log (target, id);

    CREATE TABLE audit_seal (
        seq        bigint PRIMARY KEY CHECK (seq >= 1),
        entry_id   bigint NOT NULL UNIQUE REFERENCES audit_log (id),
        prev_hash  bytea NOT NULL,
        hash       bytea NOT NULL,
        sealed_at  timestamptz NOT NULL DEFAULT now()
    );

    -- Work queue of entries waiting for the sealer (not part of the record).
    CREATE TABLE audit_pending (
        entry_id  bigint PRIMARY KEY REFERENCES audit_log (id)
    );

    CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit log is append-only: % on % is not allowed',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END;
    $$;
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_seal
        FOR EACH ROW EXECUTE FUNCTION audit_append_only();
    CREATE TRIGGER audit_seal_no_truncate BEFORE TRUNCATE ON audit_seal
        FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

    CREATE FUNCTION audit_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO audit_pending (entry_id) VALUES (NEW.id);
        RETURN NULL;
    END;
    $$;
    CREATE TRIGGER audit_log_enqueue AFTER INSERT ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_enqueue();
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE audit_pending;
    DROP TABLE audit_seal;
    DROP TABLE audit_log;
    DROP FUNCTION audit_enqueue();
    DROP FUNCTION audit_append_only();
    DROP TABLE refresh_tokens;
    DROP TABLE api_keys;
    DROP TABLE users;
    """)
