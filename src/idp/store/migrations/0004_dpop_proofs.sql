-- baton-idp schema 4: DPoP proofs seen at the token endpoint (RFC 9449 §11.1), shared by every
-- replica. `proof` is SHA-256 of the key's thumbprint, a zero byte and the `jti`; `jkt` the first
-- 16 bytes of SHA-256 of the thumbprint, counted against the per-key share.
CREATE TABLE dpop_proofs (
    proof      bytea PRIMARY KEY,
    jkt        bytea NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX dpop_proofs_jkt ON dpop_proofs (jkt, expires_at);
CREATE INDEX dpop_proofs_expires ON dpop_proofs (expires_at);
