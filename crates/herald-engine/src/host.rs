//! What scripts can reach outside the sandbox: `$http` (blocking for the script, async
//! underneath, with a timeout no longer than what is left of the turn's budget and an address
//! filter against link-local and cloud-metadata targets), `$pushgate` (committed before the call
//! returns, so a link handed to another service works at once; deleted again if the turn
//! fails), `$jobs` (collected and committed with the turn: a job scheduled by a script that then
//! fails is not stored), and `log`.

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use herald_script::Host;
use herald_store::{DialogKey, JobStatus, NewJob};
use serde_json::{Map, Value, json};

use crate::Shared;
use crate::pushgate::{self, PushbackIn};

/// True for addresses scripts may not call by default: link-local (where cloud metadata
/// services live) and the known metadata endpoints.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.octets() == [100, 100, 100, 200],
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    == "fd00:ec2::254"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap_or(std::net::Ipv6Addr::UNSPECIFIED)
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_forbidden(IpAddr::V4(v4)))
        }
    }
}

/// DNS resolution that drops forbidden addresses, so a hostname cannot smuggle one in.
pub(crate) struct FilteringResolver;

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_forbidden(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host}: no permitted address (link-local and metadata addresses are refused)"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(crate) fn http_client(allow_link_local: bool) -> reqwest::Client {
    outbound(allow_link_local)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The client of the delivery loop (webhook steps): the same address filter and redirect policy
/// as `$http`, with a timeout for each whole request.
pub(crate) fn delivery_client(allow_link_local: bool, timeout: Duration) -> reqwest::Client {
    outbound(allow_link_local)
        .timeout(timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

fn outbound(allow_link_local: bool) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none());
    if !allow_link_local {
        b = b.dns_resolver(Arc::new(FilteringResolver));
    }
    b
}

/// The literal IP address of `url` when it is a link-local or metadata address (the resolver
/// filter only sees host names).
pub(crate) fn forbidden_literal(url: &reqwest::Url) -> Option<IpAddr> {
    let ip = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()?;
    is_forbidden(ip).then_some(ip)
}

pub(crate) struct WorkerHost {
    pub shared: Arc<Shared>,
    pub handle: tokio::runtime::Handle,
    pub dialog: DialogKey,
    /// The dialog's contact, once stored.
    pub contact_id: Option<i64>,
    /// Jobs scheduled and cancelled by this turn's scripts, committed with the turn.
    pub scheduled: RefCell<Vec<NewJob>>,
    pub cancelled: RefCell<Vec<(String, i64)>>,
    /// Pushbacks this turn created (stored at once, so that a link works as soon as a script
    /// hands it out): if the turn fails, they are deleted with its result.
    pub created: RefCell<Vec<String>>,
}

impl WorkerHost {
    pub(crate) fn new(
        shared: Arc<Shared>,
        handle: tokio::runtime::Handle,
        dialog: DialogKey,
        contact_id: Option<i64>,
    ) -> Self {
        Self {
            shared,
            handle,
            dialog,
            contact_id,
            scheduled: RefCell::new(Vec::new()),
            cancelled: RefCell::new(Vec::new()),
            created: RefCell::new(Vec::new()),
        }
    }
}

const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(30);

impl WorkerHost {
    async fn http_async(
        &self,
        method: &str,
        url: &str,
        opts: &Value,
        budget: Duration,
    ) -> Result<Value, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("$http: bad url `{url}`: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "$http: only http and https urls are allowed, got `{}`",
                parsed.scheme()
            ));
        }
        if !self.shared.config.http_allow_link_local
            && let Some(ip) = forbidden_literal(&parsed)
        {
            return Err(format!(
                "$http: {ip} is a link-local or metadata address and is refused"
            ));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let timeout = opts
            .get("timeout")
            .and_then(Value::as_u64)
            .map(Duration::from_millis)
            .unwrap_or(self.shared.config.http_timeout)
            .min(MAX_HTTP_TIMEOUT)
            .min(budget);
        let mut req = self.shared.http.request(method, parsed).timeout(timeout);
        let mut has_content_type = false;
        if let Some(headers) = opts.get("headers").and_then(Value::as_object) {
            for (k, v) in headers {
                has_content_type |= k.eq_ignore_ascii_case("content-type");
                let v = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                req = req.header(k.as_str(), v);
            }
        }
        if let Some(q) = opts.get("query").and_then(Value::as_object) {
            let pairs: Vec<(String, String)> = q
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect();
            req = req.query(&pairs);
        }
        match opts.get("body") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => req = req.body(s.clone()),
            Some(other) => {
                if !has_content_type {
                    req = req.header("content-type", "application/json");
                }
                req = req.body(other.to_string());
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Ok(
                    json!({"isOk": false, "status": 0, "data": null, "headers": {}, "error": e.to_string()}),
                );
            }
        };
        let status = resp.status();
        let headers: Map<String, Value> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (k.as_str().to_owned(), Value::String(v.to_owned())))
            })
            .collect();
        let bytes = resp.bytes().await.unwrap_or_default();
        let data = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(
            json!({"isOk": status.is_success(), "status": status.as_u16(), "data": data, "headers": headers}),
        )
    }
}

impl Host for WorkerHost {
    fn http(
        &self,
        method: &str,
        url: &str,
        opts: &Value,
        budget: Duration,
    ) -> Result<Value, String> {
        self.handle
            .block_on(self.http_async(method, url, opts, budget))
    }

    fn create_pushback(&self, args: &[Value]) -> Result<Value, String> {
        let s = |i: usize, name: &str| -> Result<String, String> {
            match args.get(i) {
                Some(Value::String(v)) => Ok(v.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(format!(
                    "createPushback: `{name}` (argument {}) must be a string",
                    i + 1
                )),
            }
        };
        let input = PushbackIn {
            dialog: DialogKey {
                channel_type: s(0, "channelType")?,
                bot_id: s(1, "botId")?,
                chat_id: s(2, "chatId")?,
            },
            event: s(3, "event")?,
            event_data: args.get(4).cloned().unwrap_or_else(|| json!({})),
            expires_at: None,
            max_uses: None,
        };
        let p = self
            .handle
            .block_on(pushgate::create(
                self.shared.store.as_ref(),
                &self.shared.project,
                input,
            ))
            .map_err(|e| format!("createPushback: {e}"))?;
        self.created.borrow_mut().push(p.id.clone());
        Ok(pushgate::to_json(&p, &self.shared.config.public_url))
    }

    fn delete_pushback(&self, id: &str) -> Result<bool, String> {
        self.handle
            .block_on(self.shared.store.delete_pushback(id))
            .map_err(|e| format!("deletePushback: {e}"))
    }

    fn schedule_job(&self, args: &Value) -> Result<Value, String> {
        // A bot-level run has no dialog to default to: like the Bot API, it names the lead.
        let here = (!self.dialog.is_bot_level()).then_some(crate::jobs::Here {
            dialog: &self.dialog,
            contact_id: self.contact_id,
        });
        let job = self
            .handle
            .block_on(crate::jobs::new_job(
                &self.shared,
                &self.dialog.bot_id,
                args,
                here,
                "script",
            ))
            .map_err(|e| format!("$jobs.schedule: {e}"))?;
        let shown = crate::jobs::job_json(&crate::jobs::record_of(&job));
        self.scheduled.borrow_mut().push(job);
        Ok(shown)
    }

    fn cancel_job(&self, id: i64) -> Result<bool, String> {
        let mut scheduled = self.scheduled.borrow_mut();
        if let Some(i) = scheduled.iter().position(|j| j.id == id) {
            scheduled.remove(i);
            return Ok(true);
        }
        let bot_id = &self.dialog.bot_id;
        let job = self
            .handle
            .block_on(self.shared.store.get_job(bot_id, id, 0))
            .map_err(|e| format!("$jobs.cancel: {e}"))?;
        let live =
            job.is_some_and(|(j, _)| matches!(j.status, JobStatus::Pending | JobStatus::Running));
        if live {
            self.cancelled.borrow_mut().push((bot_id.clone(), id));
        }
        Ok(live)
    }

    fn log(&self, message: &str) {
        tracing::info!(
            target: "herald::script",
            bot = %self.dialog.bot_id,
            chat = %self.dialog.chat_id,
            "{message}"
        );
    }
}
