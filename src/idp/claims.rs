//! How the claims of exchange edges combine with a subject's: objects merge, arrays union, and
//! a scalar already present is kept; and where two edges disagree in a way merging cannot
//! reconcile. The policy merges; config validation refuses edges that conflict.

use crate::jwt::Claims;
use serde_json::Value;

/// Adds `add` into `into`: objects merge, arrays union, and an existing scalar is kept, so a
/// user's claim is never dropped or changed.
pub fn merge(into: &mut Claims, add: &Claims) {
    for (k, v) in add {
        match (into.get_mut(k), v) {
            (None, _) => {
                into.insert(k.clone(), v.clone());
            }
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b),
            (Some(Value::Array(a)), Value::Array(b)) => {
                for item in b {
                    if !a.contains(item) {
                        a.push(item.clone());
                    }
                }
            }
            (Some(_), _) => {}
        }
    }
}

/// The dotted path of the first member where `a` and `b` disagree in a way merging cannot
/// reconcile (two different scalars, or a scalar against an object or array).
pub fn conflict(a: &Claims, b: &Claims) -> Option<String> {
    for (k, va) in a {
        let Some(vb) = b.get(k) else { continue };
        match (va, vb) {
            (Value::Object(x), Value::Object(y)) => {
                if let Some(p) = conflict(x, y) {
                    return Some(format!("{k}.{p}"));
                }
            }
            (Value::Array(_), Value::Array(_)) => {}
            (x, y) if x == y => {}
            _ => return Some(k.clone()),
        }
    }
    None
}
