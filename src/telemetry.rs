//! Every metric baton exports, in one place.
