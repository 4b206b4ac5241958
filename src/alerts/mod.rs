//! Alert delivery to a webhook (n8n, Make, a Telegram bot relay): JSON POSTs from a background task, with
//! retries, that never hold up whoever raises the alert.
//!
//! [`Sender::send`] only puts the payload in a bounded queue (dropping the oldest alert, with a warning,
//! when full) and returns. One task per webhook delivers the queue in order: connection errors, timeouts,
//! 404, 410, 429 and 5xx are retried with exponential backoff (an n8n workflow that is switched off
//! answers 404 until it is switched on again); other replies and exhausted retries are logged, counted
//! in [`failures`] (for `/metrics`) and the alert is dropped.
//!
//! [`schema`] is the one JSON shape of every alert and the pure mapping from the core's events to it;
//! [`task`] subscribes to the core's events and fans alerts out to the configured receivers.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error_chain::{io_error_kind, root_cause};

pub mod schema;
pub mod task;

pub use schema::{Alert, Severity};

/// Alerts given up on (refused or retries exhausted) since tend started, by every webhook.
static FAILURES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Alert deliveries that failed for good since tend started (`tend_alert_delivery_failures_total`).
pub fn failures() -> u64 {
    FAILURES.load(Ordering::Relaxed)
}

/// How deliveries behave; [`Sender::spawn`] uses the defaults with the given retries and backoff.
#[derive(Debug, Clone)]
pub struct WebhookOptions {
    /// Retries after the first attempt; `retries = 3` means up to 4 POSTs of one alert.
    pub retries: u32,
    /// Wait before the first retry; doubles with each further retry up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Alerts waiting beyond this many push out the oldest.
    pub capacity: usize,
    /// Bounds one POST, so a receiver that never answers costs a timeout, not the queue.
    pub request_timeout: Duration,
}

impl Default for WebhookOptions {
    fn default() -> WebhookOptions {
        WebhookOptions {
            retries: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            capacity: 100,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The handle alerts are sent through. Cheap to clone; when the last clone is dropped, the task delivers
/// what is still queued and ends.
#[derive(Debug, Clone)]
pub struct Sender {
    queue: Arc<Queue>,
    _open: Arc<OpenGuard>,
}

#[derive(Debug)]
struct Queue {
    items: Mutex<VecDeque<Value>>,
    capacity: usize,
    wake: Notify,
    closed: AtomicBool,
}

impl Queue {
    fn items(&self) -> MutexGuard<'_, VecDeque<Value>> {
        // The lock guards plain pushes and pops; a panic elsewhere cannot leave the deque half-changed.
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dropped with the last `Sender`: tells the task no more alerts will come.
#[derive(Debug)]
struct OpenGuard(Arc<Queue>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

impl Sender {
    /// Starts the delivery task for `url` with default options besides `retries` and `backoff`.
    pub fn spawn(
        client: reqwest::Client,
        url: impl Into<String>,
        retries: u32,
        backoff: Duration,
    ) -> (Sender, JoinHandle<()>) {
        let options = WebhookOptions {
            retries,
            backoff,
            ..WebhookOptions::default()
        };
        Sender::spawn_with(client, url, options)
    }

    /// Starts the delivery task for `url`. Must be called inside a tokio runtime.
    pub fn spawn_with(
        client: reqwest::Client,
        url: impl Into<String>,
        options: WebhookOptions,
    ) -> (Sender, JoinHandle<()>) {
        let queue = Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            capacity: options.capacity.max(1),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let worker = Worker {
            client,
            url: url.into(),
            options,
            queue: queue.clone(),
        };
        let task = tokio::spawn(worker.run());
        let sender = Sender {
            _open: Arc::new(OpenGuard(queue.clone())),
            queue,
        };
        (sender, task)
    }

    /// Queues `payload` for delivery and returns at once. When the queue is full the oldest alert is
    /// dropped (and a warning logged): fresh news beats stale news.
    pub fn send(&self, payload: Value) {
        let dropped = {
            let mut items = self.queue.items();
            let dropped = if items.len() >= self.queue.capacity {
                items.pop_front().is_some()
            } else {
                false
            };
            items.push_back(payload);
            dropped
        };
        if dropped {
            tracing::warn!(
                capacity = self.queue.capacity,
                "webhook queue is full (the receiver is slow or down); dropped the oldest alert"
            );
        }
        self.queue.wake.notify_one();
    }

    /// Alerts waiting for delivery (not counting one being delivered right now).
    pub fn queued(&self) -> usize {
        self.queue.items().len()
    }
}

struct Worker {
    client: reqwest::Client,
    url: String,
    options: WebhookOptions,
    queue: Arc<Queue>,
}

/// How one alert's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Delivered,
    Rejected(u16),
    GaveUp { attempts: u32, last: String },
}

impl Worker {
    async fn run(self) {
        loop {
            let next = self.queue.items().pop_front();
            match next {
                Some(payload) => match self.deliver(&payload).await {
                    Delivery::Delivered => {
                        tracing::debug!(url = %self.url, "alert delivered to the webhook")
                    }
                    Delivery::Rejected(code) => {
                        FAILURES.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            url = %self.url,
                            "webhook refused an alert with HTTP {code}; not retrying (check the URL and the receiver)"
                        )
                    }
                    Delivery::GaveUp { attempts, last } => {
                        FAILURES.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            url = %self.url,
                            "giving up on an alert after {attempts} attempts (last: {last}); is the webhook receiver up?"
                        )
                    }
                },
                None if self.queue.closed.load(Ordering::Acquire) => return,
                // A notification sent between the pop and here is kept as a permit, so none is lost.
                None => self.queue.wake.notified().await,
            }
        }
    }

    async fn deliver(&self, payload: &Value) -> Delivery {
        let attempts = self.options.retries.saturating_add(1);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff_delay(
                    self.options.backoff,
                    attempt - 1,
                    self.options.max_backoff,
                ))
                .await;
            }
            let sent = self
                .client
                .post(&self.url)
                .timeout(self.options.request_timeout)
                .json(payload)
                .send()
                .await;
            match sent {
                Ok(reply) if reply.status().is_success() => return Delivery::Delivered,
                Ok(reply) => {
                    let status = reply.status();
                    if !retryable(status.as_u16()) {
                        return Delivery::Rejected(status.as_u16());
                    }
                    last = format!("HTTP {}", status.as_u16());
                }
                Err(err) => last = describe(&err),
            }
        }
        Delivery::GaveUp { attempts, last }
    }
}

/// Replies worth another try: the receiver may come back (5xx, 429 too many requests, and 404 / 410,
/// which n8n and Make answer while a workflow is switched off). Other 4xx mean the alert itself is wrong.
fn retryable(code: u16) -> bool {
    (500..600).contains(&code) || matches!(code, 404 | 410 | 429)
}

/// `base`, `2 × base`, `4 × base`, … for retry 0, 1, 2, …, never above `max`.
fn backoff_delay(base: Duration, retry: u32, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "no answer in time".to_string();
    }
    if io_error_kind(err) == Some(std::io::ErrorKind::ConnectionRefused) {
        return "connection refused".to_string();
    }
    root_cause(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::probe::test_support::{client, closed_addr, serve};
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::json;
    use std::sync::atomic::AtomicUsize;

    /// A receiver answering the n-th POST (0-based) with `answer(n)`, recording the accepted bodies.
    #[derive(Clone)]
    struct Receiver {
        posts: Arc<AtomicUsize>,
        accepted: Arc<Mutex<Vec<Value>>>,
        answer: fn(usize) -> StatusCode,
    }

    impl Receiver {
        async fn start(answer: fn(usize) -> StatusCode) -> (Receiver, String) {
            let receiver = Receiver {
                posts: Arc::new(AtomicUsize::new(0)),
                accepted: Arc::new(Mutex::new(Vec::new())),
                answer,
            };
            let app = Router::new()
                .route("/hook", post(handle))
                .with_state(receiver.clone());
            let url = format!("http://{}/hook", serve(app).await);
            (receiver, url)
        }

        fn accepted(&self) -> Vec<Value> {
            self.accepted.lock().unwrap().clone()
        }
    }

    async fn handle(State(r): State<Receiver>, Json(body): Json<Value>) -> StatusCode {
        let n = r.posts.fetch_add(1, Ordering::SeqCst);
        let status = (r.answer)(n);
        if status.is_success() {
            r.accepted.lock().unwrap().push(body);
        }
        status
    }

    /// Drops the sender and waits (bounded) for the task to deliver everything and end.
    async fn finish(sender: Sender, task: JoinHandle<()>) {
        drop(sender);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("delivery task did not finish")
            .unwrap();
    }

    #[tokio::test]
    async fn two_failures_then_success_is_exactly_one_delivery() {
        let (receiver, url) = Receiver::start(|n| {
            if n < 2 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        })
        .await;
        let (sender, task) = Sender::spawn(client(), url, 3, Duration::from_millis(10));
        let alert =
            json!({"service": "send_text", "status": "critical", "message": "no answer within 5s"});
        sender.send(alert.clone());
        finish(sender, task).await;
        assert_eq!(receiver.accepted(), vec![alert]);
        assert_eq!(receiver.posts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_run_out_then_the_next_alert_goes_out() {
        let (receiver, url) = Receiver::start(|n| {
            if n < 3 {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::NO_CONTENT
            }
        })
        .await;
        let (sender, task) = Sender::spawn(client(), url, 2, Duration::from_millis(5));
        sender.send(json!({"n": 1}));
        sender.send(json!({"n": 2}));
        finish(sender, task).await;
        // Alert 1 took 3 POSTs (all 502) and was dropped; alert 2 went through at once.
        assert_eq!(receiver.posts.load(Ordering::SeqCst), 4);
        assert_eq!(receiver.accepted(), vec![json!({"n": 2})]);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let (receiver, url) = Receiver::start(|_| StatusCode::BAD_REQUEST).await;
        let (sender, task) = Sender::spawn(client(), url, 5, Duration::from_millis(5));
        let before = failures();
        sender.send(json!({"n": 1}));
        finish(sender, task).await;
        assert_eq!(receiver.posts.load(Ordering::SeqCst), 1);
        assert!(failures() > before, "a refused alert is counted");
    }

    #[tokio::test]
    async fn an_inactive_workflow_404_is_retried_until_it_is_back() {
        let (receiver, url) = Receiver::start(|n| match n {
            0 => StatusCode::NOT_FOUND,
            1 => StatusCode::GONE,
            _ => StatusCode::OK,
        })
        .await;
        let (sender, task) = Sender::spawn(client(), url, 3, Duration::from_millis(5));
        sender.send(json!({"n": 1}));
        finish(sender, task).await;
        assert_eq!(receiver.posts.load(Ordering::SeqCst), 3);
        assert_eq!(receiver.accepted(), vec![json!({"n": 1})]);
    }

    #[test]
    fn which_replies_are_retried() {
        let retried: Vec<u16> = [200, 400, 401, 403, 404, 410, 422, 429, 500, 502, 503]
            .into_iter()
            .filter(|c| retryable(*c))
            .collect();
        assert_eq!(retried, [404, 410, 429, 500, 502, 503]);
    }

    #[tokio::test]
    async fn refused_connections_are_retried_with_backoff() {
        let url = format!("http://{}/hook", closed_addr());
        let (sender, task) = Sender::spawn(client(), url, 2, Duration::from_millis(40));
        let started = std::time::Instant::now();
        sender.send(json!({"n": 1}));
        finish(sender, task).await;
        // Two retries waited 40 ms and 80 ms.
        assert!(
            started.elapsed() >= Duration::from_millis(120),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_does_not_block_send() {
        let app = Router::new().route(
            "/hook",
            post(|| async {
                std::future::pending::<()>().await;
            }),
        );
        let url = format!("http://{}/hook", serve(app).await);
        let options = WebhookOptions {
            capacity: 5,
            request_timeout: Duration::from_secs(60),
            ..WebhookOptions::default()
        };
        let (sender, task) = Sender::spawn_with(client(), url, options);
        let started = std::time::Instant::now();
        for n in 0..1000 {
            sender.send(json!({ "n": n }));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "send blocked for {:?}",
            started.elapsed()
        );
        // The task holds one alert in its hung POST; at most `capacity` of the newest wait behind it.
        assert!(sender.queued() <= 5, "{}", sender.queued());
        let newest = sender.queue.items().back().cloned();
        assert_eq!(newest, Some(json!({"n": 999})));
        task.abort();
    }

    #[tokio::test]
    async fn a_hung_receiver_costs_a_timeout_not_the_queue() {
        let (receiver, good_url) = Receiver::start(|_| StatusCode::OK).await;
        let app = Router::new().route("/hook", post(std::future::pending::<()>));
        let hung_url = format!("http://{}/hook", serve(app).await);
        let options = WebhookOptions {
            retries: 1,
            backoff: Duration::from_millis(5),
            request_timeout: Duration::from_millis(100),
            ..WebhookOptions::default()
        };
        let (hung, hung_task) = Sender::spawn_with(client(), hung_url, options.clone());
        let (good, good_task) = Sender::spawn_with(client(), good_url, options);
        hung.send(json!({"to": "hung"}));
        good.send(json!({"to": "good"}));
        // Webhooks are independent, and a hung one still finishes its queue after its timeouts.
        finish(good, good_task).await;
        assert_eq!(receiver.accepted(), vec![json!({"to": "good"})]);
        finish(hung, hung_task).await;
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let delays: Vec<u128> = (0..6)
            .map(|r| backoff_delay(base, r, max).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_delay(base, 200, max), max);
    }
}
