//! What `baton demo` does and prints: the chain called, cached, stepped up, or served to a
//! browser.

use super::chain::Chain;
use super::{DEMO_PASSWORD, DEMO_USER, Error, MFA_PATH, Options, TraceTo, report, trace};
use crate::shutdown;
use crate::signin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// `baton demo`; with `serve`, keeps the chain up for a browser until Ctrl-C or SIGTERM; with
/// `grpc`, runs the chain over gRPC.
pub async fn main(serve: bool, grpc: bool) -> ExitCode {
    let result = match (serve, grpc) {
        (true, _) => run_serve().await,
        (false, true) => run_grpc().await,
        (false, false) => run().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let spans = crate::otel::Collected::default();
    let chain = Chain::start_with(Options {
        txn_tokens: true,
        tracing: Some(TraceTo::Memory(spans.clone())),
        ..Options::default()
    })
    .await?;
    let out = report::Report::new(&chain);
    out.started();
    let agent = signin::Agent::new()?;
    let req = chain.signin_request(DEMO_USER, DEMO_PASSWORD);
    let tokens = agent.sign_in(&req, None).await?.tokens;
    out.signed_in(&tokens);
    let before = chain.idp.exchanges();
    spans.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let (status, body) = chain.call(&tokens.access_token, "/").await?;
    out.first_call(status, &body, chain.idp.exchanges() - before);
    out.trace(&collected_trace(&spans).await);
    out.txn_tokens(&body);
    let before = chain.idp.exchanges();
    let (status, _) = chain.call(&tokens.access_token, "/").await?;
    out.second_call(status, chain.idp.exchanges() - before);

    // Step-up: C demands mfa on MFA_PATH; the challenge travels back through B and A.
    let (status, body) = chain.call(&tokens.access_token, MFA_PATH).await?;
    out.challenged(status, &body);
    let stepped = step_up(&chain, &agent, &req, &tokens).await?;
    out.stepped_up(&stepped);
    let (status, body) = chain.call(&stepped.tokens.access_token, MFA_PATH).await?;
    out.after_step_up(status, &body);
    chain.stop().await;
    Ok(())
}

/// `baton demo --grpc`: the same chain and per-hop table, every hop a gRPC call.
async fn run_grpc() -> Result<(), Error> {
    let chain = Chain::start_with(Options {
        grpc: true,
        ..Options::default()
    })
    .await?;
    let out = report::Report::new(&chain);
    out.started_grpc();
    let tokens = chain.sign_in(DEMO_USER, DEMO_PASSWORD).await?;
    out.signed_in(&tokens);
    let before = chain.idp.exchanges();
    let answer = chain.call_grpc(Some(&tokens.access_token)).await?;
    out.first_grpc_call(&answer, chain.idp.exchanges() - before);
    let before = chain.idp.exchanges();
    let answer = chain.call_grpc(Some(&tokens.access_token)).await?;
    out.second_grpc_call(&answer, chain.idp.exchanges() - before);
    let answer = chain.call_grpc(None).await?;
    out.grpc_refused(&answer);
    chain.stop().await;
    Ok(())
}

/// The tree of the call just made: the trace of the `inbound` span at service-a that started
/// one, once its spans are in (the exporters gather for a moment; at most 3 s).
async fn collected_trace(spans: &crate::otel::Collected) -> String {
    use opentelemetry::trace::TraceId;
    let root = |all: &[(Arc<str>, opentelemetry_sdk::trace::SpanData)]| {
        all.iter()
            .find(|(service, s)| {
                &**service == "service-a-baton"
                    && s.name == "inbound"
                    && s.parent_span_id == opentelemetry::trace::SpanId::INVALID
            })
            .map(|(_, s)| s.span_context.trace_id())
    };
    let (mut drawn, mut last) = (String::new(), 0);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let all = spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let trace = root(&all).unwrap_or(TraceId::INVALID);
        let n = all
            .iter()
            .filter(|(_, s)| s.span_context.trace_id() == trace)
            .count();
        drawn = trace::tree(&all, trace);
        // A, B, C: inbound and app; A and B: outbound, exchange; the IdP: two token requests;
        // more with Txn-Tokens. Done once that many are in and no more came.
        if n >= 12 && n == last {
            break;
        }
        last = n;
    }
    drawn
}

/// Steps `tokens`' user up to `mfa` in the same IdP session: `id_token_hint`, `acr_values=mfa`
/// and the current one-time code from the user's demo TOTP secret.
pub async fn step_up(
    chain: &Chain,
    agent: &signin::Agent,
    req: &signin::Request,
    tokens: &signin::Tokens,
) -> Result<signin::Outcome, Error> {
    let hint = tokens.id_token.clone().ok_or_else(|| {
        Error::SignIn(signin::Error::Flow {
            step: "step-up",
            reason: "no ID token to send as id_token_hint".into(),
        })
    })?;
    let totp_secret = chain.totp_secret(&req.username).ok_or_else(|| {
        Error::SignIn(signin::Error::Flow {
            step: "step-up",
            reason: "the user has no TOTP secret".into(),
        })
    })?;
    let s = signin::StepUp {
        acr_values: "mfa".into(),
        id_token_hint: hint,
        totp_secret,
    };
    Ok(agent.sign_in(req, Some(&s)).await?)
}

async fn run_serve() -> Result<(), Error> {
    let chain = Chain::start().await?;
    let out = report::Report::new(&chain);
    out.started();
    out.serving(&chain.edge);
    let signal = shutdown::os_signal().await;
    eprintln!("baton demo: {signal}: stopping");
    chain.stop().await;
    Ok(())
}
