//! Flood waits the services report, and `/reload_cache` requests (a dialog fetch, gated like a start).

use super::*;

impl Supervisor {
    /// A flood wait a service reported: held against its restarts (`flood_until`), evidence that its
    /// run fetched dialogs, and, for a dialog fetch, an observation of its group's account.
    pub(super) fn handle_flood(&mut self, report: FloodReport) {
        let now = self.clock.now_ms();
        let name = report.service.as_str();
        let seconds = report.seconds;
        // The emulator prints model seconds while compressing time: scale them like tend's own.
        let wait_ms =
            (seconds as f64 * 1000.0 * self.config.supervisor.output_time_scale).round() as Millis;
        let until_ms = report.at_ms + wait_ms;
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        if report.dialogs && service.run.is_some() {
            service.evidence.flood_at.get_or_insert(now);
        }
        if service.flood_until.is_some_and(|t| t >= until_ms) {
            return;
        }
        if report.dialogs {
            let observation = Observation::Flood {
                at: report.at_ms,
                wait_ms,
                raised: report.raised,
            };
            self.observe(name, observation);
            if report.raised {
                self.mark_zombie(name, report.at_ms, now);
            }
        }
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        service.flood_until = Some(until_ms);
        let left = if until_ms > now {
            format!(
                "the account may fetch dialogs again in {}",
                human_ms(until_ms - now)
            )
        } else {
            "already over".to_string()
        };
        service
            .log
            .try_marker(format!("flood wait of {seconds}s reported; {left}"));
        if let Some(group) = service.cfg.group.clone() {
            self.drive_recovery(&group, recovery::Input::FloodSeen { until_ms });
        }
    }

    /// `POST /reload_cache`: fetches every dialog like a start, so it passes the same gate and is
    /// recorded in the same history.
    /// The answer of a `/reload_cache` request. One that fetched nothing (not connected, 503 not ready)
    /// gives its place in the start history back: it cost the account nothing.
    pub(super) fn cache_reloaded(
        &mut self,
        name: &str,
        asked_ms: Millis,
        fetched: bool,
        text: &str,
    ) {
        let Some(service) = self.services.get(name) else {
            return;
        };
        if fetched {
            service.log.try_marker(text.to_string());
            return;
        }
        service.log.try_marker(format!(
            "{text}; nothing was fetched, so this reload does not count in the spacing"
        ));
        let starts = &mut self.persisted.service_mut(name).starts;
        let before = starts.len();
        starts.retain(|r| {
            !(r.at_ms == asked_ms && matches!(r.reason, StartReason::ReloadCache { .. }))
        });
        if starts.len() != before {
            self.save_state();
            self.observe(name, Observation::Retract { at: asked_ms });
        }
    }

    pub(super) fn reload_cache(&mut self, name: &str, force: bool, by: &str) -> Outcome {
        let now = self.clock.now_ms();
        let Some(service) = self.services.get(name) else {
            return Outcome::NoSuchService;
        };
        let Some(port) = service.cfg.port else {
            return Outcome::Failed {
                message: "has no `port`: tend does not know where its /reload_cache is".into(),
            };
        };
        if !service.state.has_process() || service.state == ServiceState::Stopping {
            return Outcome::Failed {
                message: format!("is {}: nothing to reload", service.state),
            };
        }
        if !force {
            if let Some(message) = self.recovery_hold(name) {
                return Outcome::Failed { message };
            }
            if let Some(refusal) = self.refusal(name, now) {
                return refusal;
            }
        }
        self.persisted.record_start(
            name,
            StartRecord {
                at_ms: now,
                reason: StartReason::ReloadCache { by: by.to_string() },
                forced: force,
            },
        );
        service.log.try_marker(format!(
            "reloading the dialog cache (POST /reload_cache), asked by {by}"
        ));
        self.save_state();
        self.observe(
            name,
            Observation::Sweep {
                at: now,
                ours: true,
            },
        );
        // The request runs in its own task (a full fetch takes minutes); its answer comes back as a
        // message, so the actor never waits on the network.
        let client = self.http.clone();
        let url = format!("http://127.0.0.1:{port}/reload_cache");
        let tx = self.internal_tx.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let answer = client
                .post(&url)
                .timeout(Duration::from_secs(600))
                .send()
                .await;
            let (fetched, text) = match answer {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    // 503 "client not ready": the service did not even try to fetch.
                    let fetched = status != reqwest::StatusCode::SERVICE_UNAVAILABLE;
                    let text = format!(
                        "reload_cache answered HTTP {}: {}",
                        status.as_u16(),
                        body.trim()
                    );
                    (fetched, text)
                }
                // Not connected: nothing was fetched. A timeout may have fetched: it counts.
                Err(err) => (!err.is_connect(), format!("reload_cache failed: {err}")),
            };
            let _ = tx.send(Internal::CacheReloaded {
                name,
                asked_ms: now,
                fetched,
                text,
            });
        });
        Outcome::Done {
            message: "dialog cache reload requested (counted like a start)".into(),
        }
    }
}
