use super::*;

#[test]
fn names_carry_prefix_unit_and_labels() {
    let m = Metrics::new();
    m.inbound("api", "allowed");
    m.jwks_fetches
        .get_or_create(&Outcome { outcome: "error" })
        .inc();
    m.verify_latency.observe(0.00004, None);
    let text = m.encode();
    assert!(
        text.contains(r#"baton_inbound_requests_total{route="api",outcome="allowed"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"baton_jwks_fetches_total{outcome="error"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("baton_verify_latency_seconds_count 1"),
        "{text}"
    );
    assert!(text.contains("baton_jwks_age_seconds"), "{text}");
}

#[test]
fn exchange_metrics_are_registered_with_the_rest() {
    let all = Metrics::new();
    let m = &all.exchange;
    m.exchanged("b", "ok", Duration::from_millis(3));
    let lookups = m.lookups("b");
    lookups.hit.inc();
    lookups.miss.inc();
    m.answer_refused("b", "token_type");
    let text = all.encode();
    for name in [
        "baton_exchange_latency_seconds_count{route=\"b\"} 1",
        "baton_exchanges_total{route=\"b\",outcome=\"ok\"} 1",
        "baton_exchange_cache_hits_total{route=\"b\"} 1",
        "baton_exchange_cache_misses_total{route=\"b\"} 1",
        "baton_exchange_answers_refused_total{route=\"b\",reason=\"token_type\"} 1",
    ] {
        assert!(text.contains(name), "{name} missing in\n{text}");
    }
}

#[test]
fn exemplars_go_to_openmetrics_and_stay_out_of_the_prometheus_text() {
    let m = Metrics::new();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736".to_owned();
    m.verify_latency
        .observe(0.00004, Some(TraceExemplar { trace_id }));
    let marker = r#"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.00004"#;
    let open = m.encode_openmetrics();
    assert!(open.contains(marker), "{open}");
    let text = m.encode();
    assert!(!text.contains("trace_id"), "{text}");
    assert!(
        text.contains("baton_verify_latency_seconds_count 1"),
        "{text}"
    );
    assert_eq!(text.lines().count(), open.lines().count());
}

#[test]
fn only_an_exemplar_shaped_suffix_is_cut() {
    let id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let bucket = r#"x_bucket{le="0.1"} 3"#;
    assert_eq!(
        without_exemplar(&format!(r#"{bucket} # {{trace_id="{id}"}} 0.05"#)),
        bucket
    );
    assert_eq!(
        without_exemplar(&format!(
            r#"{bucket} # {{trace_id="{id}"}} 0.05 1700000000.0"#
        )),
        bucket
    );
    // A label value holding the marker is part of the sample, not an exemplar.
    let odd = format!(r#"x_total{{route=" # {{trace_id=\"{id}\"}} 1"}} 3"#);
    assert_eq!(without_exemplar(&odd), odd);
    let short = r#"x_total{route="a"} 3 # {trace_id="abc"} 1"#;
    assert_eq!(without_exemplar(short), short);
    assert_eq!(without_exemplar("# HELP x y"), "# HELP x y");
}
