//! Running rules off the message path: the gateway offers each message (a filter
//! check and, on a match, a non-blocking enqueue); a dispatcher evaluates queued
//! messages with bounded concurrency, delivers every action (retrying what may
//! succeed later with backoff) and sends failures to the rule's error action.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ferrocore_model::rules::{DestinationStatus, DestinationTarget};
use ferrocore_registry::{MessageSink, Publisher, Registry, RoutedMessage};
use ferrocore_rules_sql::{Context, Lookups, Template, Value};
use ferrocore_shadow_service::ShadowService;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc};

use crate::compile::{Action, CompiledRule, RuleSet};
use crate::targets::{Failure, Output, Targets};
use crate::{RulesConfig, now_ms};

static NEXT_ENGINE_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// (engine id, generation, rule set) as last seen by this thread.
    static THREAD_RULES: RefCell<Option<(u64, u64, Arc<RuleSet>)>> = const { RefCell::new(None) };
}

/// A message accepted for evaluation.
struct Message {
    topic: String,
    /// Payload and properties as published, shared with the gateway's deliveries.
    published: Arc<ferrocore_message::Message>,
    client_id: Option<String>,
    principal: Option<String>,
    received_ms: i64,
    hops: u8,
}

struct Job {
    rules: Vec<Arc<CompiledRule>>,
    message: Message,
}

pub struct Engine {
    registry: Arc<Registry>,
    /// get_thing_shadow() reads through the shadow service.
    shadows: ShadowService,
    config: RulesConfig,
    rules: RwLock<Arc<RuleSet>>,
    /// No enabled rule matches anything: the message path then costs one atomic load.
    idle: AtomicBool,
    /// Bumped on every reload; threads on the message path keep their own copy of
    /// the rule set until it moves (no lock, no shared reference count per message).
    generation: AtomicU64,
    id: u64,
    targets: Targets,
    queue: mpsc::Sender<Job>,
    /// Confirmation tokens already sent, so each request goes out once per token.
    confirmations_sent: Mutex<HashSet<String>>,
    /// Rules that did not compile at the last reload (logged when this changes).
    problems: Mutex<Vec<(String, String)>>,
    /// Actions currently failing, by (rule, action index): logged on change only.
    failing: Mutex<HashSet<(String, usize)>>,
    /// `failing.len()`, read without the lock on every delivery.
    failing_count: AtomicUsize,
    /// `ferrocore_rules_messages_dropped_total{reason="queue_full"}`, registered once.
    dropped: metrics::Counter,
}

impl Engine {
    /// Loads the rules and starts the dispatcher and the reloader (on every rule change).
    pub async fn start(registry: Arc<Registry>, shadows: ShadowService, config: RulesConfig) -> Arc<Self> {
        let (queue, jobs) = mpsc::channel(config.queue_capacity.max(1));
        let engine = Arc::new(Self {
            targets: Targets::new(&config),
            registry,
            shadows,
            config,
            rules: RwLock::new(Arc::new(RuleSet::default())),
            idle: AtomicBool::new(true),
            generation: AtomicU64::new(0),
            id: NEXT_ENGINE_ID.fetch_add(1, Ordering::Relaxed),
            queue,
            confirmations_sent: Mutex::default(),
            problems: Mutex::default(),
            failing: Mutex::default(),
            failing_count: AtomicUsize::new(0),
            dropped: metrics::counter!("ferrocore_rules_messages_dropped_total", "reason" => "queue_full"),
        });
        engine.reload().await;
        tokio::spawn(engine.clone().dispatch(jobs));
        tokio::spawn(engine.clone().follow_changes());
        engine
    }

    /// Where republish actions publish (the gateway, once bound).
    pub fn attach_publisher(&self, publisher: Arc<dyn Publisher>) {
        self.targets.attach_publisher(publisher);
    }

    fn snapshot(&self) -> Arc<RuleSet> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on this thread's copy of the current rule set.
    fn with_rules<R>(&self, f: impl FnOnce(&RuleSet) -> R) -> R {
        let generation = self.generation.load(Ordering::Acquire);
        THREAD_RULES.with(|cell| {
            let mut cached = cell.borrow_mut();
            let current = matches!(&*cached, Some((id, seen, _)) if *id == self.id && *seen == generation);
            if !current {
                *cached = Some((self.id, generation, self.snapshot()));
            }
            f(&cached.as_ref().expect("just filled").2)
        })
    }

    async fn follow_changes(self: Arc<Self>) {
        let mut changes = self.registry.rule_changes();
        while changes.changed().await.is_ok() {
            self.reload().await;
        }
    }

    /// Reloads rules and destinations now (the engine also does on every change to them).
    pub async fn reload(self: &Arc<Self>) {
        let (rules, destinations) =
            match tokio::try_join!(self.registry.all_topic_rules(), self.registry.all_topic_rule_destinations()) {
                Ok(loaded) => loaded,
                Err(err) => {
                    tracing::error!(error = %err, "cannot load topic rules; keeping the previous set");
                    return;
                }
            };
        let (set, problems) = RuleSet::build(rules, &destinations);
        {
            let mut known = self.problems.lock().unwrap_or_else(|e| e.into_inner());
            if *known != problems {
                for (rule, problem) in &problems {
                    tracing::warn!(rule = %rule, problem = %problem, "topic rule cannot run");
                }
                *known = problems;
            }
        }
        self.idle.store(set.matches_nothing(), Ordering::Release);
        self.failing.lock().unwrap_or_else(|e| e.into_inner()).retain(|(rule, _)| set.by_name(rule).is_some());
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        self.generation.fetch_add(1, Ordering::Release);
        let pending: Vec<(String, String, String)> = destinations
            .into_iter()
            .filter_map(|d| match (d.status, d.target, d.confirmation_token) {
                (DestinationStatus::InProgress, DestinationTarget::Http { confirmation_url }, Some(token)) => {
                    Some((d.arn, confirmation_url, token))
                }
                _ => None,
            })
            .collect();
        let mut sent = self.confirmations_sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.retain(|token| pending.iter().any(|(_, _, t)| t == token));
        for (arn, url, token) in pending {
            if sent.insert(token.clone()) {
                // In the background: an unreachable endpoint must not hold up rule changes.
                tokio::spawn(self.clone().send_confirmation(arn, url, token));
            }
        }
    }

    /// POSTs `{arn, confirmationToken, enableUrl, messageType}` to a new HTTP destination;
    /// on failure the token is forgotten, so the next reload tries again.
    async fn send_confirmation(self: Arc<Self>, arn: String, url: String, token: String) {
        let body = json!({
            "arn": arn,
            "confirmationToken": token,
            "enableUrl": format!("{}/confirmdestination/{token}", self.config.api_url.trim_end_matches('/')),
            "messageType": "DestinationConfirmation",
        });
        match self.targets.confirm(&url, &body).await {
            Ok(()) => {
                tracing::info!(destination = %arn, url, "sent a topic rule destination confirmation")
            }
            Err(err) => {
                tracing::warn!(destination = %arn, url, error = %err, "cannot deliver a topic rule destination confirmation");
                self.confirmations_sent.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
            }
        }
    }

    fn enqueue(&self, rules: Vec<Arc<CompiledRule>>, message: &RoutedMessage<'_>) {
        // A full queue is known before anything is copied.
        if self.queue.capacity() == 0 {
            self.dropped.increment(1);
            return;
        }
        let job = Job {
            rules,
            message: Message {
                topic: message.topic.to_string(),
                published: message.message.clone(),
                client_id: message.client_id.map(str::to_string),
                principal: message.principal.map(str::to_string),
                received_ms: now_ms(),
                hops: message.hops,
            },
        };
        if self.queue.try_send(job).is_err() {
            self.dropped.increment(1);
        }
    }

    /// Evaluates queued messages here, one at a time (CPU work, off the connection
    /// tasks), and runs the actions of each matching rule in their own task, at most
    /// `max_in_flight` at once.
    async fn dispatch(self: Arc<Self>, mut jobs: mpsc::Receiver<Job>) {
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight.max(1)));
        while let Some(job) = jobs.recv().await {
            let message = Arc::new(job.message);
            let payload = Arc::new(ferrocore_rules_sql::payload_value(&message.published.payload));
            for rule in job.rules {
                // A panic in one evaluation must not stop the engine for every rule.
                let evaluated =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.evaluate(&rule, &message, &payload)));
                let Ok(evaluated) = evaluated else {
                    rule.counters.evaluation_failed.increment(1);
                    tracing::error!(rule = %rule.name, "rule evaluation panicked; the message is skipped for this rule");
                    continue;
                };
                let Some((result, context)) = evaluated else {
                    continue;
                };
                if rule.actions.is_empty() {
                    continue;
                }
                let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
                let (engine, message, payload) = (self.clone(), message.clone(), payload.clone());
                tokio::spawn(async move {
                    engine.deliver(&rule, &message, &payload, &context, &result).await;
                    drop(permit);
                });
            }
        }
    }

    fn context(&self, rule: &CompiledRule, message: &Message) -> Context {
        let lookups: Option<Arc<dyn Lookups>> =
            rule.uses_lookups.then(|| Arc::new(ShadowLookups(self.shadows.clone())) as Arc<dyn Lookups>);
        Context {
            topic: message.topic.clone(),
            client_id: message.client_id.clone(),
            principal: message.principal.clone(),
            account_id: self.config.account_id.clone(),
            timestamp_ms: message.received_ms,
            new_uuid: fast_uuid(),
            trace_id: fast_uuid(),
            sql_version: rule.sql_version.clone(),
            properties: message.published.properties.clone(),
            lookups,
            raw_payload: message.published.payload.clone(),
        }
    }

    /// The rule's result for one message, and the context its templates render with;
    /// None when WHERE does not hold or evaluation fails (both counted).
    fn evaluate(&self, rule: &CompiledRule, message: &Message, payload: &Value) -> Option<(Value, Context)> {
        let context = self.context(rule, message);
        let evaluated = if rule.uses_lookups {
            tokio::task::block_in_place(|| ferrocore_rules_sql::evaluate(&rule.query, payload, &context))
        } else {
            ferrocore_rules_sql::evaluate(&rule.query, payload, &context)
        };
        match evaluated {
            Ok(Some(result)) => {
                rule.counters.matched.increment(1);
                Some((result, context))
            }
            Ok(None) => {
                rule.counters.filtered.increment(1);
                None
            }
            Err(err) => {
                rule.counters.evaluation_failed.increment(1);
                tracing::debug!(rule = %rule.name, error = %err, "rule evaluation failed");
                None
            }
        }
    }

    /// Runs every action of a matched rule, then its error action if any failed.
    async fn deliver(
        &self,
        rule: &CompiledRule,
        message: &Message,
        payload: &Value,
        context: &Context,
        result: &Value,
    ) {
        let name = rule.name.as_str();
        let bytes = ferrocore_rules_sql::output_bytes(result);
        let output = Output { bytes: &bytes, value: result, hops: message.hops };
        let render = |template: &Template| render(template, payload, context, rule.uses_lookups);
        let rules = self.snapshot();
        let prefixes = rules.enabled_http_prefixes.as_slice();
        let (output_ref, render_ref) = (&output, &render);
        let deliveries = rule.actions.iter().enumerate().map(|(index, action)| async move {
            let outcome = self.deliver_with_retries(name, index, action, output_ref, render_ref, prefixes).await;
            outcome.err().map(|failure| (action.kind, failure))
        });
        let failures: Vec<(&str, Failure)> =
            futures_util::future::join_all(deliveries).await.into_iter().flatten().collect();
        if failures.is_empty() {
            return;
        }
        let Some(error_action) = &rule.error_action else {
            return;
        };
        let report = error_payload(name, message, &context.trace_id, &failures);
        let report_bytes = report.to_string().into_bytes();
        let report_value = Value::from_json(&report);
        let output = Output { bytes: &report_bytes, value: &report_value, hops: message.hops };
        let outcome = self.deliver_with_retries(name, usize::MAX, error_action, &output, &render, prefixes).await;
        let label = if outcome.is_ok() { "succeeded" } else { "failed" };
        metrics::counter!("ferrocore_rules_error_actions_total", "rule" => name.to_string(), "outcome" => label)
            .increment(1);
    }

    async fn deliver_with_retries(
        &self,
        rule: &str,
        index: usize,
        action: &Action,
        output: &Output<'_>,
        render: &(dyn Fn(&Template) -> Result<String, Failure> + Send + Sync),
        prefixes: &[String],
    ) -> Result<(), Failure> {
        let mut attempt = 1;
        loop {
            match self.targets.deliver(action.kind, &action.spec, output, render, prefixes).await {
                Ok(()) => {
                    action.counters.succeeded.increment(1);
                    self.note_state(rule, index, action.kind, None);
                    return Ok(());
                }
                // An action already known to be failing is not retried: one dead target
                // must not hold delivery slots every other rule needs.
                Err(failure)
                    if failure.retryable && attempt < self.config.max_attempts && !self.is_failing(rule, index) =>
                {
                    action.counters.retried.increment(1);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Err(failure) => {
                    action.counters.failed.increment(1);
                    self.note_state(rule, index, action.kind, Some(&failure));
                    return Err(failure);
                }
            }
        }
    }

    fn is_failing(&self, rule: &str, index: usize) -> bool {
        self.failing_count.load(Ordering::Relaxed) > 0
            && self.failing.lock().unwrap_or_else(|e| e.into_inner()).contains(&(rule.to_string(), index))
    }

    /// Logs when an action starts failing and when it recovers, not every message.
    fn note_state(&self, rule: &str, index: usize, kind: &str, failure: Option<&Failure>) {
        if failure.is_none() && self.failing_count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let key = (rule.to_string(), index);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match failure {
            Some(failure) if failing.insert(key.clone()) => tracing::warn!(
                rule,
                action = kind,
                resource = %failure.resource,
                error = %failure.message,
                "rule action failing"
            ),
            None if failing.remove(&key) => {
                tracing::info!(rule, action = kind, "rule action recovered")
            }
            _ => {}
        }
        self.failing_count.store(failing.len(), Ordering::Relaxed);
    }
}

/// A random (v4) UUID from a per-thread xorshift generator seeded by the OS once:
/// two are made per evaluated message, and the OS generator costs a system call each.
fn fast_uuid() -> String {
    thread_local! {
        static STATE: std::cell::Cell<(u64, u64)> = std::cell::Cell::new({
            let seed = uuid::Uuid::new_v4().as_u64_pair();
            (seed.0 | 1, seed.1 | 1)
        });
    }
    let next = || {
        STATE.with(|state| {
            // xorshift128+
            let (mut a, b) = state.get();
            let result = a.wrapping_add(b);
            a ^= a << 23;
            let a = a ^ b ^ (a >> 17) ^ (b >> 26);
            state.set((b, a));
            result
        })
    };
    let bytes = (u128::from(next()) << 64 | u128::from(next())).to_le_bytes();
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// 100 ms, 200 ms, 400 ms, ... capped at 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.saturating_sub(1).min(6)).min(5_000))
}

fn render(template: &Template, payload: &Value, context: &Context, uses_lookups: bool) -> Result<String, Failure> {
    let rendered = if uses_lookups {
        tokio::task::block_in_place(|| template.render(payload, context))
    } else {
        template.render(payload, context)
    };
    rendered.map_err(|err| Failure::permanent("substitution template", err.to_string()))
}

/// AWS's error action message: one per (rule, message), every failed action listed.
fn error_payload(rule: &str, message: &Message, trace_id: &str, failures: &[(&str, Failure)]) -> serde_json::Value {
    use base64::Engine as _;
    json!({
        "ruleName": rule,
        "topic": message.topic,
        "cloudwatchTraceId": trace_id,
        "clientId": message.client_id.clone().unwrap_or_default(),
        "base64OriginalPayload": base64::engine::general_purpose::STANDARD.encode(&message.published.payload),
        "failures": failures.iter().map(|(kind, failure)| json!({
            "failedAction": failed_action_name(kind),
            "failedResource": failure.resource,
            "errorMessage": failure.message,
        })).collect::<Vec<_>>(),
    })
}

/// The names AWS uses in `failedAction` (`S3Action`, `DynamoActionV2`, ...).
fn failed_action_name(kind: &str) -> String {
    let known = match kind {
        "dynamoDB" => "DynamoAction",
        "dynamoDBv2" => "DynamoActionV2",
        "cloudwatchLogs" => "CloudwatchLogsAction",
        "cloudwatchMetric" => "CloudwatchMetricAction",
        "cloudwatchAlarm" => "CloudwatchAlarmAction",
        "iotAnalytics" => "IotAnalyticsAction",
        "iotEvents" => "IotEventsAction",
        "iotSiteWise" => "IotSiteWiseAction",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    let mut chars = kind.chars();
    let first = chars.next().map(|c| c.to_ascii_uppercase()).unwrap_or_default();
    format!("{first}{}Action", chars.as_str())
}

/// get_thing_shadow() against ferrocore's own shadows (called on a blocking-capable thread).
struct ShadowLookups(ShadowService);

impl Lookups for ShadowLookups {
    fn thing_shadow(&self, thing: &str, shadow: Option<&str>) -> Option<serde_json::Value> {
        tokio::runtime::Handle::current().block_on(self.0.get(thing, shadow, None)).ok()
    }
}

impl MessageSink for Engine {
    fn offer(&self, message: &RoutedMessage<'_>) {
        if self.idle.load(Ordering::Acquire) {
            return;
        }
        let matched = self.with_rules(|rules| rules.matching(message.topic));
        if !matched.is_empty() {
            self.enqueue(matched, message);
        }
    }

    fn ingest(&self, rule: &str, message: &RoutedMessage<'_>) -> bool {
        match self.with_rules(|rules| rules.by_name(rule)) {
            Some(rule) => {
                self.enqueue(vec![rule], message);
                true
            }
            None => false,
        }
    }
}
