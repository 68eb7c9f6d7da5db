use super::*;
use crate::idp::claims::conflict;
use proptest::prelude::*;

fn obj(v: Value) -> Claims {
    match v {
        Value::Object(m) => m,
        _ => Claims::new(),
    }
}

fn edge(client: &str, target: &str, scopes: &[&str]) -> Edge {
    Edge {
        client: client.into(),
        target: target.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        claims: Claims::new(),
        max_lifetime: None,
        scope_beyond_subject: false,
    }
}

fn subject() -> Claims {
    obj(json!({
        "iss": "https://idp", "sub": "alice", "aud": "service-a", "exp": 1300, "iat": 1000,
        "jti": "j1", "client_id": "service-a", "scope": "openid profile", "grants": ["service-a"],
        "acr": "pwd", "amr": ["pwd"], "auth_time": 990, "account_id": "acct-1001",
        "prefs": {"lang": "en"}, "roles": ["reader"]
    }))
}

fn exchange<'a>(subject: &'a Claims, edges: Vec<&'a Edge>) -> Exchange<'a> {
    Exchange {
        issuer: "https://idp",
        client: "service-a",
        subject,
        actor: None,
        edges,
        scope: None,
        requested_lifetime: None,
        default_lifetime: 600,
        max_chain_depth: 3,
        sign_in: 86_400,
        now: 1000,
        jti: "fresh".into(),
    }
}

#[test]
fn new_token_keeps_user_claims_and_records_the_hop() {
    let s = subject();
    let e = edge("service-a", "service-b", &["openid"]);
    let out = decide(&exchange(&s, vec![&e])).expect("allowed");
    assert_eq!(out["sub"], "alice");
    assert_eq!(out["account_id"], "acct-1001");
    assert_eq!(out["aud"], "service-b");
    assert_eq!(out["client_id"], "service-a");
    assert_eq!(out["grants"], json!(["service-a", "service-b"]));
    assert_eq!(out["act"], json!({"sub": "service-a"}));
    assert_eq!(out["acr"], "pwd");
    assert_eq!(out["auth_time"], 990);
    assert_eq!(out["scope"], "openid");
    assert_eq!(out["jti"], "fresh");
    assert_eq!(
        out["exp"], 1300,
        "default lifetime is capped at the subject's exp"
    );
}

#[test]
fn act_nests_the_previous_actor_and_depth_is_bounded() {
    let mut s = subject();
    s.insert("act".into(), json!({"sub": "service-a"}));
    let e = edge("service-b", "service-c", &[]);
    let mut x = exchange(&s, vec![&e]);
    x.client = "service-b";
    let out = decide(&x).expect("allowed");
    assert_eq!(
        out["act"],
        json!({"sub": "service-b", "act": {"sub": "service-a"}})
    );
    s.insert(
        "act".into(),
        json!({"sub": "x", "act": {"sub": "y", "act": {"sub": "z"}}}),
    );
    let x = exchange(&s, vec![&e]);
    assert_eq!(decide(&x), Err(Refusal::ChainDepth(3)));
}

#[test]
fn scope_is_downscoped_unless_the_edge_allows_more() {
    let s = subject();
    let mut e = edge("service-a", "builds-api", &["update:builds", "openid"]);
    let mut x = exchange(&s, vec![&e]);
    x.scope = Some(vec!["update:builds".into()]);
    assert_eq!(decide(&x), Err(Refusal::Scope("update:builds".into())));
    x.scope = Some(vec!["profile".into()]);
    assert_eq!(
        decide(&x),
        Err(Refusal::Scope("profile".into())),
        "not on the edge"
    );
    e.scope_beyond_subject = true;
    let mut x = exchange(&s, vec![&e]);
    x.scope = Some(vec!["update:builds".into()]);
    assert_eq!(decide(&x).expect("allowed")["scope"], "update:builds");
}

#[test]
fn lifetime_beyond_the_subject_needs_an_edge_max_lifetime() {
    let s = subject();
    let mut e = edge("service-a", "builds-api", &[]);
    let mut x = exchange(&s, vec![&e]);
    x.requested_lifetime = Some(3600);
    assert_eq!(decide(&x), Err(Refusal::Lifetime));
    e.max_lifetime = Some(7200);
    let mut x = exchange(&s, vec![&e]);
    x.requested_lifetime = Some(3600);
    assert_eq!(decide(&x).expect("allowed")["exp"], 4600);
    x.requested_lifetime = Some(7201);
    assert_eq!(decide(&x), Err(Refusal::Lifetime));
}

#[test]
fn a_self_edge_never_renews_past_the_sign_in_and_keeps_the_lineage() {
    let mut s = subject();
    s.insert("sid".into(), json!("sid-1"));
    s.insert("grant_id".into(), json!("g-1"));
    let mut e = edge("builds-api", "builds-api", &[]);
    e.max_lifetime = Some(86_400);
    let ends = 990 + 86_400;
    let mut x = exchange(&s, vec![&e]);
    x.client = "builds-api";
    x.max_chain_depth = 32;
    x.default_lifetime = 86_400;
    let mut token = decide(&x).expect("first renewal");
    assert_eq!(
        token["exp"], ends,
        "capped at auth_time + sign_in, not now + max_lifetime"
    );
    assert_eq!(
        (&token["sid"], &token["grant_id"]),
        (&json!("sid-1"), &json!("g-1"))
    );
    // Renewing the renewed token later, again and again, never moves exp.
    for now in [20_000, 50_000, ends - 1] {
        let x = Exchange {
            subject: &token,
            now,
            ..x.clone()
        };
        let next = decide(&x).expect("renewal");
        assert_eq!(next["exp"], ends);
        assert_eq!(next["sid"], "sid-1", "the lineage passes through");
        assert_eq!(next["auth_time"], 990);
        token = next;
    }
    let x = Exchange {
        subject: &token,
        now: ends,
        ..x.clone()
    };
    assert_eq!(decide(&x), Err(Refusal::SignInOver));
    // A lifetime asked past the sign-in's end is cut to it; past the edge's, refused.
    let mut x = exchange(&s, vec![&e]);
    x.client = "builds-api";
    x.requested_lifetime = Some(86_400);
    assert_eq!(decide(&x).expect("cut")["exp"], ends);
    x.requested_lifetime = Some(86_401);
    assert_eq!(decide(&x), Err(Refusal::Lifetime));
}

#[test]
fn may_act_is_honoured() {
    let mut s = subject();
    s.insert("may_act".into(), json!({"sub": "service-z"}));
    let e = edge("service-a", "service-b", &[]);
    assert_eq!(decide(&exchange(&s, vec![&e])), Err(Refusal::MayAct));
    let actor = obj(json!({"sub": "service-z"}));
    let mut x = exchange(&s, vec![&e]);
    x.actor = Some(&actor);
    let out = decide(&x).expect("named actor allowed");
    assert_eq!(out["act"]["sub"], "service-z");
    assert!(!out.contains_key("may_act"));
}

#[test]
fn several_targets_give_an_aud_array_and_merged_claims() {
    let s = subject();
    let mut b = edge("service-a", "service-b", &["openid"]);
    b.claims = obj(json!({"prefs": {"tz": "UTC"}, "roles": ["writer"], "account_id": "other"}));
    let c = edge("service-a", "service-c", &["openid"]);
    let out = decide(&exchange(&s, vec![&b, &c])).expect("allowed");
    assert_eq!(out["aud"], json!(["service-b", "service-c"]));
    assert_eq!(out["prefs"], json!({"lang": "en", "tz": "UTC"}));
    assert_eq!(out["roles"], json!(["reader", "writer"]));
    assert_eq!(
        out["account_id"], "acct-1001",
        "a user's scalar is never changed"
    );
    assert_eq!(decide(&exchange(&s, vec![])), Err(Refusal::NoTarget));
}

#[test]
fn conflicts_are_found_by_path() {
    let a = obj(json!({"x": {"y": 1}, "l": [1], "same": "v"}));
    let b = obj(json!({"x": {"y": 2}, "l": [2], "same": "v"}));
    assert_eq!(conflict(&a, &b), Some("x.y".into()));
    let c = obj(json!({"x": {"z": 2}, "l": [2], "same": "v"}));
    assert_eq!(conflict(&a, &c), None);
    assert_eq!(conflict(&a, &obj(json!({"same": 3}))), Some("same".into()));
}

fn claim_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn claims() -> impl Strategy<Value = Claims> {
    prop::collection::btree_map("[a-f]", claim_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

/// Every leaf of `a` is still present in `b` (arrays: every element still there).
fn contains_all(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .all(|(k, v)| y.get(k).is_some_and(|w| contains_all(v, w))),
        (Value::Array(x), Value::Array(y)) => x.iter().all(|v| y.contains(v)),
        _ => a == b,
    }
}

proptest! {
    /// Where merging is defined (no two of the three disagree on a scalar: `conflict` is what
    /// config loading refuses), the order of merging edges does not matter for the result.
    #[test]
    fn merge_is_associative_where_defined(a in claims(), b in claims(), c in claims()) {
        prop_assume!(conflict(&a, &b).is_none() && conflict(&b, &c).is_none() && conflict(&a, &c).is_none());
        let mut left = a.clone();
        merge(&mut left, &b);
        merge(&mut left, &c);
        let mut bc = b.clone();
        merge(&mut bc, &c);
        let mut right = a.clone();
        merge(&mut right, &bc);
        prop_assert_eq!(left, right);
    }

    #[test]
    fn merge_never_drops_user_claims(user in claims(), add in claims()) {
        let mut merged = user.clone();
        merge(&mut merged, &add);
        prop_assert!(contains_all(&Value::Object(user), &Value::Object(merged)));
    }

    #[test]
    fn exchange_keeps_user_claims(user in claims(), add in claims()) {
        let mut s = subject();
        for (k, v) in user.iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())) {
            s.insert(format!("u_{k}"), v.clone());
        }
        let mut e = edge("service-a", "service-b", &[]);
        e.claims = add.into_iter().map(|(k, v)| (format!("u_{k}"), v)).collect();
        let out = decide(&exchange(&s, vec![&e])).expect("allowed");
        for (k, v) in s.iter().filter(|(k, _)| !RESERVED.contains(&k.as_str())) {
            prop_assert!(out.get(k).is_some_and(|w| contains_all(v, w)), "lost {k}");
        }
        prop_assert_eq!(&out["sub"], "alice");
    }

    #[test]
    fn scope_never_widens(
        subject_scope in prop::collection::btree_set("[a-e]", 0..5),
        edge_scope in prop::collection::btree_set("[a-e]", 0..5),
        asked in prop::option::of(prop::collection::vec("[a-e]", 0..5)),
    ) {
        let mut s = subject();
        s.insert("scope".into(), json!(subject_scope.iter().cloned().collect::<Vec<_>>().join(" ")));
        let scopes: Vec<&str> = edge_scope.iter().map(String::as_str).collect();
        let e = edge("service-a", "service-b", &scopes);
        let mut x = exchange(&s, vec![&e]);
        x.scope = asked;
        if let Ok(out) = decide(&x) {
            for granted in crate::jwt::scopes(&out) {
                prop_assert!(subject_scope.contains(granted) && edge_scope.contains(granted));
            }
        }
    }

    #[test]
    fn exp_bound_holds(
        subject_exp in 1001u64..5000,
        max_lifetime in prop::option::of(1u64..10_000),
        asked in prop::option::of(0u64..20_000),
    ) {
        let mut s = subject();
        s.insert("exp".into(), json!(subject_exp));
        let mut e = edge("service-a", "service-b", &[]);
        e.max_lifetime = max_lifetime;
        let mut x = exchange(&s, vec![&e]);
        x.requested_lifetime = asked;
        if let Ok(out) = decide(&x) {
            let exp = out["exp"].as_u64().unwrap_or(u64::MAX);
            let bound = subject_exp.max(1000 + max_lifetime.unwrap_or(0));
            prop_assert!(exp <= bound);
            if max_lifetime.is_none() { prop_assert!(exp <= subject_exp); }
        }
    }

    /// However many renewals, at whatever times, along edges of any `max_lifetime`: no token
    /// of a sign-in expires after `auth_time` + `sign_in`, and once past it none is issued.
    #[test]
    fn no_chain_of_renewals_outlives_the_sign_in(
        auth_time in 0u64..1000,
        sign_in in 1u64..100_000,
        steps in prop::collection::vec((1u64..50_000, prop::option::of(1u64..200_000)), 1..12),
    ) {
        let mut token = subject();
        token.insert("auth_time".into(), json!(auth_time));
        token.insert("exp".into(), json!(auth_time + 300));
        let mut now = auth_time;
        for (wait, max_lifetime) in steps {
            now += wait;
            let mut e = edge("builds-api", "builds-api", &[]);
            e.max_lifetime = max_lifetime;
            let x = Exchange {
                client: "builds-api",
                max_chain_depth: 32,
                sign_in,
                now,
                ..exchange(&token, vec![&e])
            };
            let subject_exp = token["exp"].as_u64().unwrap_or(0);
            match decide(&x) {
                Ok(next) => {
                    let exp = next["exp"].as_u64().unwrap_or(u64::MAX);
                    prop_assert!(exp <= auth_time + sign_in && exp > now);
                    token = next;
                }
                Err(Refusal::SignInOver) => prop_assert!(now >= auth_time + sign_in),
                Err(Refusal::Lifetime) => prop_assert!(subject_exp <= now),
                Err(r) => prop_assert_eq!(r, Refusal::ChainDepth(32)),
            }
        }
    }
}
