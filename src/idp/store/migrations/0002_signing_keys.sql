-- baton-idp schema 2: signing keys shared by every replica. `sealed` is the PKCS#8 PEM private
-- key encrypted with AES-256-GCM under the key-encryption key (12-byte nonce, then ciphertext
-- and tag; the kid is the associated data).
CREATE TABLE signing_keys (
    kid        text PRIMARY KEY,
    alg        text NOT NULL,
    state      text NOT NULL,
    created_at bigint NOT NULL,
    retired_at bigint,
    sealed     bytea NOT NULL
);
