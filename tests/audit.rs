//! Spans and audit events, captured by a real subscriber over the scripted flow of
//! `tests/observability.rs`. One test, alone in its process (see there).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use support::flow::scripted_flow;
use tower_token_auth::observability::AUDIT_TARGET;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Every event and span field of the flow: what was recorded, by name.
#[derive(Clone, Debug, Default)]
struct Recorded {
    events: Vec<(String, HashMap<String, String>)>,
    spans: HashMap<u64, (String, HashMap<String, String>)>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Recorded>>);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").trim_matches('"').to_owned());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().spans.insert(id.into_u64(), (attrs.metadata().name().to_owned(), fields));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some((_, fields)) = self.0.lock().unwrap().spans.get_mut(&id.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().events.push((event.metadata().target().to_owned(), fields));
    }
}

#[test]
fn audit_events_and_spans_carry_the_fields_a_siem_needs_and_never_a_secret() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plain_texts = tracing::subscriber::with_default(subscriber, || runtime.block_on(scripted_flow()));
    let recorded = capture.0.lock().unwrap().clone();

    let audit: Vec<&HashMap<String, String>> =
        recorded.events.iter().filter(|(target, _)| target == AUDIT_TARGET).map(|(_, fields)| fields).collect();
    let names: Vec<&str> = audit.iter().map(|f| f["event"].as_str()).collect();
    assert_eq!(names, ["sign_in", "sign_in", "refresh_reuse", "logout", "password_change"], "{audit:#?}");
    assert_eq!(audit[0]["user.id"], "7");
    assert_eq!(audit[0]["device"], "laptop");
    assert!(audit[0]["session.id"].parse::<u64>().is_ok());
    let reuse = audit[2];
    assert_eq!((reuse["user.id"].as_str(), reuse["revoked"].as_str()), ("7", "2"));
    assert_eq!(reuse["session.id"], audit[1]["session.id"], "the phone's session");
    assert!(reuse["token.id"].parse::<u64>().is_ok());
    let logout = audit[3];
    assert_eq!((logout["scope"].as_str(), logout["revoked"].as_str()), ("global", "3"));
    assert_eq!(logout["session.id"], audit[0]["session.id"], "logged out from the laptop");

    let spans: Vec<&HashMap<String, String>> =
        recorded.spans.values().filter(|(name, _)| name == "authenticate").map(|(_, f)| f).collect();
    assert_eq!(spans.len(), 5, "one span per request through the layer");
    let successes: Vec<_> = spans.iter().filter(|f| f.get("outcome").map(String::as_str) == Some("success")).collect();
    assert_eq!(successes.len(), 2);
    for span in &successes {
        assert_eq!(span["user.id"], "7");
        assert!(span["token.id"].parse::<u64>().is_ok() && span["session.id"].parse::<u64>().is_ok());
    }
    let mut outcomes: Vec<&str> = spans.iter().filter_map(|f| f.get("outcome").map(String::as_str)).collect();
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["expired", "mismatch", "none", "success", "success"]);
    assert!(recorded.events.iter().any(|(_, f)| f.get("message").is_some_and(|m| m == "handler ran")));

    // No secret, and no digest, in any field of any event or span.
    let every_value: Vec<&String> = recorded
        .events
        .iter()
        .flat_map(|(_, fields)| fields.values())
        .chain(recorded.spans.values().flat_map(|(_, fields)| fields.values()))
        .collect();
    for plain in &plain_texts {
        let (_, secret) = plain.split_once('|').unwrap();
        let digest = tower_token_auth::TokenDigest::of(secret.as_bytes()).to_hex();
        for value in &every_value {
            assert!(!value.contains(secret), "a secret leaked into {value:?}");
            assert!(!value.contains(&digest[..16]), "a digest leaked into {value:?}");
        }
    }
}
