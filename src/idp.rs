//! `baton-idp`: a minimal, standards-true OpenID Provider.
