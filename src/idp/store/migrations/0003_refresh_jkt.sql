-- baton-idp schema 3: a refresh-token family bound to a DPoP key (RFC 9449 §5) keeps the key's
-- RFC 7638 thumbprint; NULL for a family started without a proof.
ALTER TABLE families ADD COLUMN jkt text;
