//! A proof's payload read in one pass into the members a proof check uses, borrowing their text
//! from the decoded bytes. As strict as [`crate::jwt::decode_object`]: one JSON object, nothing
//! after it, and no member name twice (known or not). A member's type is kept as sent
//! ([`Member`]), so each rule refuses a wrong type exactly as it refuses a missing member.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// One member's value: a string, a non-negative integer, or anything else.
#[derive(Debug)]
pub(super) enum Member<'a> {
    /// A JSON string, borrowed unless it had escapes.
    Str(Cow<'a, str>),
    /// A JSON integer that fits `u64`.
    Int(u64),
    /// Any other value (negative or fractional number, boolean, null, array, object).
    Other,
}

impl Member<'_> {
    /// The string, if it is one.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if it is one that fits `u64`.
    pub(super) fn as_u64(&self) -> Option<u64> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// The members of a proof's payload that the checks read; others are skipped.
#[derive(Debug, Default)]
pub(super) struct Payload<'a> {
    pub(super) jti: Option<Member<'a>>,
    pub(super) htm: Option<Member<'a>>,
    pub(super) htu: Option<Member<'a>>,
    pub(super) iat: Option<Member<'a>>,
    pub(super) ath: Option<Member<'a>>,
    pub(super) nonce: Option<Member<'a>>,
}

impl<'a> Payload<'a> {
    /// The payload of `json`; `None` unless it is one JSON object with unique member names.
    pub(super) fn parse(json: &'a [u8]) -> Option<Self> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let payload = de.deserialize_map(PayloadVisitor).ok()?;
        de.end().ok()?;
        Some(payload)
    }
}

struct PayloadVisitor;

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Payload<'de>, A::Error> {
        let mut p = Payload::default();
        // A set, not a list: a proof signed with its sender's own key may carry up to
        // `MAX_PROOF_LEN` bytes of members, and each checked against every other would cost
        // the receiver quadratic time. Empty (no allocation) for the usual proof.
        let mut others: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(Text(name)) = access.next_key::<Text<'de>>()? {
            let slot = match &*name {
                "jti" => &mut p.jti,
                "htm" => &mut p.htm,
                "htu" => &mut p.htu,
                "iat" => &mut p.iat,
                "ath" => &mut p.ath,
                "nonce" => &mut p.nonce,
                _ => {
                    if !others.insert(name) {
                        return Err(de::Error::custom("duplicate member name"));
                    }
                    access.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom("duplicate member name"));
            }
            *slot = Some(access.next_value::<Member<'de>>()?);
        }
        Ok(p)
    }
}

/// A member name, borrowed unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for Member<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MemberVisitor)
    }
}

struct MemberVisitor;

impl<'de> Visitor<'de> for MemberVisitor {
    type Value = Member<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Member<'de>, E> {
        Ok(Member::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Member<'de>, E> {
        Ok(Member::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Member<'de>, E> {
        Ok(Member::Int(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Member<'de>, E> {
        Ok(u64::try_from(v).map_or(Member::Other, Member::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Member<'de>, E> {
        Ok(Member::Other)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Member<'de>, E> {
        Ok(Member::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Member<'de>, E> {
        Ok(Member::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Member<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Member::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Member<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Member::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_with_their_types() {
        let json = br#"{"jti":"a\"b","htm":"GET","iat":7,"ath":null,"nonce":[1,{"x":2}],"htu":-1,"z":1.5}"#;
        let p = Payload::parse(json).unwrap();
        assert_eq!(p.jti.unwrap().as_str(), Some("a\"b"));
        assert_eq!(p.htm.unwrap().as_str(), Some("GET"));
        assert_eq!(p.iat.unwrap().as_u64(), Some(7));
        assert!(matches!(p.ath, Some(Member::Other)));
        assert!(matches!(p.nonce, Some(Member::Other)));
        assert!(matches!(p.htu, Some(Member::Other)));
        let p = Payload::parse(br#"{"iat":1.0}"#).unwrap();
        assert_eq!(p.iat.unwrap().as_u64(), None);
        let p = Payload::parse(br#"{"iat":"1"}"#).unwrap();
        assert_eq!(p.iat.unwrap().as_u64(), None);
        let p = Payload::parse(b"{}").unwrap();
        assert!(p.jti.is_none() && p.iat.is_none());
    }

    #[test]
    fn only_one_object_with_unique_names_is_a_payload() {
        for bad in [
            &br#"{"jti":"a","jti":"b"}"#[..],
            br#"{"jti":"a","j\u0074i":"b"}"#,
            br#"{"x":1,"x":2}"#,
            br#"{"x":1,"\u0078":2}"#,
            br#"{"iat":1} {}"#,
            br#"{"iat":1}x"#,
            br#"[{"iat":1}]"#,
            br#""iat""#,
            b"",
            br#"{"iat":1"#,
        ] {
            assert!(
                Payload::parse(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Names repeated inside a nested object are the nested object's business.
        assert!(Payload::parse(br#"{"x":{"a":1,"a":2},"y":{"a":1}}"#).is_some());
    }
}
