-- baton-idp schema 5: sign-out confirmations travel sealed in the confirmation page's form, so
-- the table that kept them is gone.
DROP TABLE IF EXISTS logouts;
