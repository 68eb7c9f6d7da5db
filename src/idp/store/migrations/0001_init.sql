-- baton-idp schema 1: everything expires; `expires_at` and `keep_until` are unix seconds,
-- checked on read and swept periodically. Keys are SHA-256 hashes of what clients hold.
CREATE TABLE codes (
    hash        bytea PRIMARY KEY,
    grant_json  text NOT NULL,
    expires_at  bigint NOT NULL,
    consumed_at bigint,
    family      text
);
CREATE INDEX codes_expires ON codes (expires_at);

CREATE TABLE families (
    id         text PRIMARY KEY,
    current    bytea,
    expires_at bigint NOT NULL
);
CREATE INDEX families_expires ON families (expires_at);

CREATE TABLE refresh_tokens (
    hash       bytea PRIMARY KEY,
    family     text NOT NULL,
    grant_json text NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE sessions (
    hash         bytea PRIMARY KEY,
    session_json text NOT NULL,
    expires_at   bigint NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE logouts (
    id           text PRIMARY KEY,
    pending_json text NOT NULL,
    expires_at   bigint NOT NULL
);
CREATE INDEX logouts_expires ON logouts (expires_at);

-- Client-assertion jtis (kind 'jti') and used one-time-code steps (kind 'otp').
CREATE TABLE replays (
    kind       text NOT NULL,
    key        text NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX replays_expires ON replays (expires_at);

-- Revoked sessions (kind 's') and grant families (kind 'g'). `revoked_us` (microseconds, the
-- database's clock) lets every replica copy what is new.
CREATE TABLE revocations (
    kind       text NOT NULL,
    id         text NOT NULL,
    username   text NOT NULL,
    auth_time  bigint NOT NULL,
    keep_until bigint NOT NULL,
    revoked_us bigint NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
    PRIMARY KEY (kind, id)
);
CREATE INDEX revocations_revoked ON revocations (revoked_us);
CREATE INDEX revocations_keep ON revocations (keep_until);

-- Login failure counters (kind: account, unknown, device, network), forgotten `forget_after`
-- seconds after their last failure; the sweep also keeps each kind within its entry bound.
CREATE TABLE throttle (
    id         bytea PRIMARY KEY,
    kind       text NOT NULL,
    failures   integer NOT NULL,
    last       bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX throttle_expires ON throttle (expires_at);
CREATE INDEX throttle_kind_last ON throttle (kind, last);
