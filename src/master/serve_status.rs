//! The master's side of the status listener: accepting its connections,
//! answering `GET /status`, `GET /metrics` and `POST /publish` from the
//! master's state (`status` only carries the bytes), and the publishes
//! waiting for the workers' counts.

use std::time::Instant;

use mio::Token;

use super::{pending, publish, report, status, Master, State};
use crate::relay::RelayMessage;

impl Master {
    /// The status listener is readable: take its pending connections.
    pub(super) fn on_status_accept(&mut self) {
        if let Some(s) = self.status.as_mut() {
            s.accept(self.poll.registry(), Instant::now());
        }
    }

    /// An event on status connection `token`: read on, and answer a
    /// request once its head (and body) are in.
    pub(super) fn on_status_conn(&mut self, token: Token) {
        // A publish body may be base64 (4/3 of the payload) and JSON-escaped.
        let max_body = self.current.config.server.max_message_size * 2 + 4096;
        let Some(s) = self.status.as_mut() else {
            return;
        };
        if let status::Event::Request(req) = s.on_event(self.poll.registry(), token, max_body) {
            if let Some(response) = self.answer(token, &req) {
                self.respond(token, &response);
            }
        }
    }

    fn respond(&mut self, conn: Token, response: &status::Response) {
        if let Some(s) = self.status.as_mut() {
            s.respond(self.poll.registry(), conn, response);
        }
    }

    /// Answers the publishes that are ready.
    pub(super) fn send_answers(&mut self, answers: impl IntoIterator<Item = pending::Answer>) {
        for a in answers {
            self.respond(a.conn, &status::Response::json(202, &a.json()));
        }
    }

    /// The worker on relay link `token` is gone (its link closed, or it
    /// was reaped): publishes stop waiting for its count.
    pub(super) fn publish_peer_gone(&mut self, token: Token) {
        let answers = self.publishes.gone(token);
        self.send_answers(answers);
    }

    /// Deadlines: publishes that waited long enough are answered with
    /// the counts they have, status connections past theirs are dropped.
    pub(super) fn status_timers(&mut self) {
        let now = Instant::now();
        let answers = self.publishes.expire(now);
        self.send_answers(answers);
        if let Some(s) = self.status.as_mut() {
            s.expire(self.poll.registry(), now);
        }
    }

    /// Answers one status request that came on `conn`; `None` when the
    /// answer waits for the workers (`POST /publish`, see `pending`).
    fn answer(&mut self, conn: Token, req: &status::Request) -> Option<status::Response> {
        use status::Response;
        if req.upgrade {
            return Some(Response::text(
                400,
                "the status listener does not accept WebSocket upgrades",
            ));
        }
        let response = match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/status") => {
                // 503 while draining, so that load balancers' health
                // checks send new connections elsewhere.
                let draining = self.state != State::Running;
                let mut doc = report::status_json(&self.snapshot());
                doc["state"] = if draining { "draining" } else { "running" }.into();
                Response::json(if draining { 503 } else { 200 }, &doc)
            }
            ("GET", "/metrics") => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: report::metrics_text(&self.snapshot()).into_bytes(),
            },
            ("POST", "/publish") => return self.publish(conn, req),
            (_, "/status" | "/metrics" | "/publish") => {
                Response::text(405, "use GET /status, GET /metrics or POST /publish")
            }
            (_, path) => Response::text(404, format!("no such page: {path}")),
        };
        Some(response)
    }

    fn snapshot(&self) -> report::Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let cluster = self.stats.map(|t| &t.cluster);
        let get = |f: fn(&crate::stats::ClusterCounters) -> &std::sync::atomic::AtomicU64| {
            cluster.map_or(0, |c| f(c).load(Relaxed))
        };
        report::Snapshot {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            generation: self.current.number,
            config_path: self.current.config.source.display().to_string(),
            workers: self.stats.map(report::read_workers).unwrap_or_default(),
            cluster: report::ClusterFigures {
                enabled: self.current.config.cluster.is_some(),
                instance_id: self.instance_id.clone(),
                connected: get(|c| &c.connected) != 0,
                published: get(|c| &c.published),
                received: get(|c| &c.received),
                dropped: get(|c| &c.dropped),
            },
        }
    }

    /// `POST /publish` on `conn`: a counted broadcast to every worker,
    /// the plain one to the cluster helper. Who is in a room is known
    /// only inside the workers, so the 202 with the number of receivers
    /// waits (in `pending`, never blocking this loop) for their counts;
    /// `None` then. Refusals are answered at once.
    fn publish(&mut self, conn: Token, req: &status::Request) -> Option<status::Response> {
        use status::Response;
        let token = self
            .status
            .as_ref()
            .and_then(|s| s.token().map(str::to_string));
        if let Some(token) = token {
            if req.bearer.as_deref() != Some(token.as_str()) {
                return Some(Response::text(
                    401,
                    "POST needs Authorization: Bearer <[status] token>",
                ));
            }
        }
        let (key, message) = match publish::parse(&req.body, &self.current.app) {
            Ok(v) => v,
            Err(publish::Refused(status, why)) => return Some(Response::text(status, why)),
        };
        let message = RelayMessage {
            key,
            skip: None,
            message,
        };
        let request = self.publishes.next_request();
        let (mut counted, mut plain) = (Vec::new(), Vec::new());
        message.encode_counted(request, &mut counted);
        message.encode(&mut plain);
        let (workers, cluster) = self.send_publish(&counted, &plain);
        log::debug!(
            "status: publish {request} waits for {} workers",
            workers.len()
        );
        let deadline = Instant::now() + pending::WAIT;
        let answer = self
            .publishes
            .wait(request, conn, workers, cluster, deadline)?;
        Some(Response::json(202, &answer.json()))
    }
}
