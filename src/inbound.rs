//! Inbound listener: bearer → verify → route rules → claims header → app.
