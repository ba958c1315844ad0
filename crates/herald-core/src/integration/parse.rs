//! The `integrations/<name>.yaml` loader. Like the bot and workflow loaders it collects every
//! problem of the file with its line, column and a hint. Checks that need other files (does the
//! routed bot exist, is a workflow bound to an event that goes nowhere) are the project's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use serde_json::Value;

use super::presets::{Encoding, HmacAlgorithm, SCHEME_NAMES, Scheme};
use super::{
    Condition, Dedupe, DeliveryId, EventDef, IngestLimits, IntegrationDef, Mapping, Pointer, Root,
    Route, Secret, TemplatePart, Verify, Who,
};
use crate::bot::CodeCheck;
use crate::bot::hints;
use crate::bot::model::{Code, CodeKind, is_reserved_event};
use crate::bot::yaml::{self, Ctx, is_null, to_json};
use crate::diag::Diagnostic;
use crate::env;

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "secret",
    "verify",
    "config",
    "dedupe",
    "limits",
    "events",
    "handler",
];
const VERIFY_KEYS: &[&str] = &[
    "scheme",
    "header",
    "encoding",
    "algorithm",
    "prefix",
    "content",
    "timestampHeader",
    "idHeader",
    "tolerance",
    "username",
    "verifyToken",
];
const DEDUPE_KEYS: &[&str] = &["header", "pointer", "window"];
const LIMIT_KEYS: &[&str] = &["rate", "burst", "body"];
const EVENT_KEYS: &[&str] = &["when", "payload", "schema", "route"];
const WHEN_KEYS: &[&str] = &["header", "query", "body"];
const ROUTE_KEYS: &[&str] = &["bot", "contact", "subscriber"];

/// How long delivery ids are remembered unless `dedupe.window` says (Stripe retries for 3
/// days, GitHub lets a delivery be redelivered by hand later).
const DEFAULT_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Requests per second and burst per integration unless `limits` says.
const DEFAULT_RATE: u32 = 1000;
const DEFAULT_BURST: u32 = 2000;

/// Parses one integration file (already read as text). `name` is the file name without
/// `.yaml`; a handler file is read from the file's directory.
pub fn parse_integration(
    name: &str,
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IntegrationDef, Vec<Diagnostic>> {
    parse_integration_checked(name, file, text, lookup, &|_| true, &|_| None)
}

/// [`parse_integration`] within a project: `is_bot` tells which bots exist (a route to another
/// is an error), and `check` runs on the handler's JavaScript.
pub fn parse_integration_checked(
    name: &str,
    file: &Path,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    is_bot: &dyn Fn(&str) -> bool,
    check: CodeCheck<'_>,
) -> Result<IntegrationDef, Vec<Diagnostic>> {
    let text = env::substitute(file, text, lookup)?;
    let root = yaml::load(file, &text).map_err(|d| vec![d])?;
    let mut b = Builder {
        cx: Ctx::new(file, &text),
        dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        is_bot,
        check,
    };
    let mut def = IntegrationDef {
        name: name.to_owned(),
        file: file.to_path_buf(),
        secrets: Vec::new(),
        verify: Verify {
            scheme: Scheme::None,
            header: None,
            encoding: Encoding::Hex,
            algorithm: HmacAlgorithm::Sha256,
            prefix: String::new(),
            content: None,
            timestamp_header: None,
            id_header: None,
            tolerance: Duration::from_secs(300),
            username: None,
            verify_token: None,
        },
        config: Value::Object(Default::default()),
        dedupe: Dedupe {
            id: None,
            window: DEFAULT_WINDOW,
        },
        limits: IngestLimits {
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            body_bytes: None,
        },
        events: Vec::new(),
        handler: None,
    };
    if let Some(top) = b.cx.mapping(&root, "the file") {
        b.top_level(top, &mut def);
    }
    let mut diags = b.cx.diags;
    if diags.is_empty() {
        Ok(def)
    } else {
        diags.sort_by_key(|d| (d.line, d.col));
        Err(diags)
    }
}

struct Builder<'a> {
    cx: Ctx<'a>,
    dir: std::path::PathBuf,
    is_bot: &'a dyn Fn(&str) -> bool,
    check: CodeCheck<'a>,
}

/// The keys of `map` that `allowed` does not list, reported.
fn unknown_keys(cx: &mut Ctx<'_>, map: &MarkedMappingNode, allowed: &[&str], what: &str) {
    for (k, _) in map.iter() {
        if !allowed.contains(&k.as_str()) {
            cx.error(
                k.span(),
                format!("unknown key `{}` in {what}", k.as_str()),
                hints::did_you_mean(k.as_str(), allowed),
            );
        }
    }
}

impl Builder<'_> {
    fn top_level(&mut self, top: &MarkedMappingNode, def: &mut IntegrationDef) {
        unknown_keys(&mut self.cx, top, TOP_KEYS, "an integration");
        if let Some(n) = top.get_node("name")
            && let Some(s) = self.cx.string(n, "`name`")
            && s.as_str() != def.name
        {
            self.cx.error(
                s.span(),
                format!(
                    "`name` is `{}` but the file is `{}.yaml`",
                    s.as_str(),
                    def.name
                ),
                "the name is the file's: its webhook is /integrations/<file name>/webhook; \
                 rename the file or remove `name:`",
            );
        }
        if let Some(n) = top.get_node("config")
            && self.cx.mapping(n, "`config`").is_some()
        {
            def.config = to_json(n);
        }
        let verify_at = top.get_node("verify");
        let scheme_known = match verify_at {
            Some(n) => self.verify(n, def),
            None => {
                self.cx.error(
                    top.span(),
                    "an integration needs `verify:`",
                    "say how requests prove they come from the platform, e.g. `verify: {scheme: \
                     github}`; write `scheme: none` to accept anything",
                );
                None
            }
        }
        .unwrap_or(false);
        if scheme_known {
            self.secrets(top, def);
        }
        def.dedupe.id = def.verify.scheme.default_delivery_id();
        if let Some(n) = top.get_node("dedupe") {
            self.dedupe(n, &mut def.dedupe);
        }
        if let Some(n) = top.get_node("limits") {
            self.limits(n, &mut def.limits);
        }
        if let Some(n) = top.get_node("events") {
            def.events = self.events(n, &def.name);
        }
        if let Some(n) = top.get_node("handler") {
            def.handler = self.handler(n);
        }
        if top.get_node("events").is_none() && top.get_node("handler").is_none() {
            self.cx.error(
                top.span(),
                "an integration needs `events:` (or a `handler:`)",
                "declare what a request raises, e.g. `events:` then `  orderCreated:` with \
                 `when`, `payload` and `route`",
            );
        }
    }

    /// `verify:`; `Some(true)` when its scheme is known.
    fn verify(&mut self, node: &Node, def: &mut IntegrationDef) -> Option<bool> {
        let map = self.cx.mapping(node, "`verify`")?;
        let mut known = false;
        unknown_keys(&mut self.cx, map, VERIFY_KEYS, "`verify`");
        let v = &mut def.verify;
        match map.get_node("scheme") {
            None => self.cx.error(
                map.span(),
                "`verify` needs `scheme`",
                format!("one of: {}", SCHEME_NAMES.join(", ")),
            ),
            Some(n) => {
                if let Some(s) = self.cx.string(n, "`verify.scheme`") {
                    match Scheme::parse(s.as_str()) {
                        Some((scheme, algorithm)) => {
                            known = true;
                            v.scheme = scheme;
                            v.tolerance = scheme.default_tolerance();
                            if let Some(a) = algorithm {
                                v.algorithm = a;
                            }
                        }
                        None => self.cx.error(
                            s.span(),
                            format!("unknown verification scheme `{}`", s.as_str()),
                            format!(
                                "{} (one of: {})",
                                hints::did_you_mean(s.as_str(), SCHEME_NAMES),
                                SCHEME_NAMES.join(", ")
                            ),
                        ),
                    }
                }
            }
        }
        let text = |b: &mut Self, key: &str| -> Option<String> {
            let n = map.get_node(key)?;
            b.cx.string(n, &format!("`verify.{key}`"))
                .map(|s| s.as_str().to_owned())
        };
        v.header = text(self, "header").map(|h| h.to_ascii_lowercase());
        v.prefix = text(self, "prefix").unwrap_or_default();
        v.content = text(self, "content");
        v.timestamp_header = text(self, "timestampHeader").map(|h| h.to_ascii_lowercase());
        v.id_header = text(self, "idHeader").map(|h| h.to_ascii_lowercase());
        v.username = text(self, "username");
        v.verify_token = text(self, "verifyToken").map(Secret);
        if let Some(n) = map.get_node("encoding")
            && let Some(s) = self.cx.string(n, "`verify.encoding`")
        {
            match Encoding::parse(s.as_str()) {
                Some(e) => v.encoding = e,
                None => self.cx.error(
                    s.span(),
                    format!("unknown encoding `{}`", s.as_str()),
                    "one of: hex, base64, base64url",
                ),
            }
        }
        if let Some(n) = map.get_node("algorithm")
            && let Some(s) = self.cx.string(n, "`verify.algorithm`")
        {
            match HmacAlgorithm::parse(s.as_str()) {
                Some(a) => v.algorithm = a,
                None => self.cx.error(
                    s.span(),
                    format!("unknown HMAC algorithm `{}`", s.as_str()),
                    "one of: sha1, sha256, sha512",
                ),
            }
        }
        if let Some(n) = map.get_node("tolerance")
            && let Some(d) = self.duration(n, "`verify.tolerance`")
        {
            v.tolerance = d;
        }
        if let Some(content) = &v.content {
            let unknown: Vec<&str> = placeholders(content)
                .into_iter()
                .filter(|p| !["id", "timestamp", "url", "body"].contains(p))
                .collect();
            if let (false, Some(n)) = (unknown.is_empty(), map.get_node("content")) {
                self.cx.error(
                    n.span(),
                    format!(
                        "unknown placeholder `{{{}}}` in `verify.content`",
                        unknown[0]
                    ),
                    "the signed content may use {id}, {timestamp}, {url} and {body}",
                );
            }
        }
        match v.scheme {
            Scheme::Hmac if v.header.is_none() => self.cx.error(
                map.span(),
                "`verify` with an `hmac` scheme needs `header`",
                "name the header the signature is in, e.g. `header: X-Signature`",
            ),
            Scheme::Basic if v.username.is_none() => self.cx.error(
                map.span(),
                "`verify` with `scheme: basic` needs `username`",
                "the secret is the password; give the user name too",
            ),
            _ => {}
        }
        if v.content
            .as_deref()
            .is_some_and(|c| c.contains("{timestamp}"))
            && v.timestamp_header.is_none()
        {
            self.cx.error(
                map.span(),
                "`verify.content` signs `{timestamp}` but `timestampHeader` is missing",
                "name the header the timestamp is in, e.g. `timestampHeader: X-Timestamp`",
            );
        }
        if v.scheme == Scheme::Hmac
            && v.timestamp_header.is_some()
            && !v
                .content
                .as_deref()
                .is_some_and(|c| c.contains("{timestamp}"))
        {
            // A timestamp nobody signed can be set to now by whoever replays a request.
            self.cx.error(
                map.span(),
                "`timestampHeader` is given but `verify.content` does not sign `{timestamp}`",
                "sign it, e.g. `content: \"{timestamp}.{body}\"`, or remove `timestampHeader`",
            );
        }
        if v.content.as_deref().is_some_and(|c| c.contains("{id}")) && v.id_header.is_none() {
            self.cx.error(
                map.span(),
                "`verify.content` signs `{id}` but `idHeader` is missing",
                "name the header the delivery id is in, e.g. `idHeader: X-Delivery-Id`",
            );
        }
        Some(known)
    }

    /// `secret:` — one or a list; required (and non-empty) unless the scheme is `none`.
    fn secrets(&mut self, top: &MarkedMappingNode, def: &mut IntegrationDef) {
        let scheme = def.verify.scheme;
        let node = top.get_node("secret");
        let mut secrets = Vec::new();
        match node {
            None => {}
            Some(Node::Sequence(list)) => {
                for n in list.iter() {
                    if let Some(s) = self.cx.string(n, "each `secret`") {
                        secrets.push(s.as_str().to_owned());
                    }
                }
            }
            Some(Node::Scalar(s)) if !is_null(s) => secrets.push(s.as_str().to_owned()),
            Some(_) => {}
        }
        secrets.retain(|s| !s.is_empty());
        if scheme == Scheme::None {
            if let Some(n) = node {
                self.cx.error(
                    n.span(),
                    "`secret` is given but `verify.scheme` is `none`",
                    "choose the scheme the secret is for, or remove `secret:`",
                );
            }
            return;
        }
        if secrets.is_empty() {
            let at = node.map_or(top.span(), Node::span);
            self.cx.error(
                at,
                format!(
                    "`verify.scheme: {}` needs a secret: `secret:` is missing or empty",
                    scheme.as_str()
                ),
                format!(
                    "set `secret: ${{MY_SECRET}}` to {}; requests are never accepted unverified \
                     unless `scheme: none` is written",
                    scheme.secret_is()
                ),
            );
        }
        if let Some(problem) = secrets.iter().find_map(|s| scheme.key_problem(s))
            && let Some(n) = node
        {
            self.cx.error(
                n.span(),
                format!("`secret` for `{}`: {problem}", scheme.as_str()),
                format!("set it to {}", scheme.secret_is()),
            );
        }
        def.secrets = secrets.into_iter().map(Secret).collect();
    }

    fn dedupe(&mut self, node: &Node, dedupe: &mut Dedupe) {
        if let Node::Scalar(s) = node
            && s.as_str() == "false"
        {
            dedupe.id = None;
            return;
        }
        let Some(map) = self.cx.mapping(node, "`dedupe`") else {
            return;
        };
        unknown_keys(&mut self.cx, map, DEDUPE_KEYS, "`dedupe`");
        match (map.get_node("header"), map.get_node("pointer")) {
            (Some(_), Some(p)) => self.cx.error(
                p.span(),
                "`dedupe` has both `header` and `pointer`",
                "the delivery id is in one place; keep one of them",
            ),
            (Some(h), None) => {
                if let Some(s) = self.cx.string(h, "`dedupe.header`") {
                    dedupe.id = Some(DeliveryId::Header(s.as_str().to_ascii_lowercase()));
                }
            }
            (None, Some(p)) => {
                if let Some(p) = self.pointer(p, "`dedupe.pointer`") {
                    dedupe.id = Some(DeliveryId::Pointer(p));
                }
            }
            (None, None) => {}
        }
        if let Some(n) = map.get_node("window")
            && let Some(d) = self.duration(n, "`dedupe.window`")
        {
            dedupe.window = d;
        }
    }

    fn limits(&mut self, node: &Node, limits: &mut IngestLimits) {
        let Some(map) = self.cx.mapping(node, "`limits`") else {
            return;
        };
        unknown_keys(&mut self.cx, map, LIMIT_KEYS, "`limits`");
        if let Some(n) = map.get_node("rate")
            && let Some(v) = self.number(n, "`limits.rate`")
        {
            limits.rate = u32::try_from(v).unwrap_or(u32::MAX);
            // The burst follows the rate unless written: two seconds' worth.
            limits.burst = limits.rate.saturating_mul(2);
        }
        if let Some(n) = map.get_node("burst")
            && let Some(v) = self.number(n, "`limits.burst`")
        {
            limits.burst = u32::try_from(v).unwrap_or(u32::MAX);
        }
        if let Some(n) = map.get_node("body")
            && let Some(s) = self.cx.string(n, "`limits.body`")
        {
            match size(s.as_str()) {
                Some(b) if b > 0 && b <= 64 << 20 => limits.body_bytes = Some(b),
                _ => self.cx.error(
                    s.span(),
                    format!("`limits.body` `{}` is not a size up to 64 MiB", s.as_str()),
                    "write bytes, or with a unit: `1MiB`, `512KiB`",
                ),
            }
        }
    }

    fn events(&mut self, node: &Node, integration: &str) -> Vec<EventDef> {
        let Some(map) = self.cx.mapping(node, "`events`") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, value) in map.iter() {
            let name = key.as_str();
            let full = format!("{integration}:{name}");
            if is_reserved_event(name) {
                self.cx.error(
                    key.span(),
                    format!("`{name}` is a reserved system event name"),
                    "pick another name for the platform's event",
                );
                continue;
            }
            if !crate::ident::is_valid(&full) || name.contains(':') {
                self.cx.error(
                    key.span(),
                    format!("`{name}` is not a valid event name"),
                    format!(
                        "use letters, digits and - _ . @ + = | ~, no `:` (the event is raised as `{integration}:<name>`, at most {} characters in all)",
                        crate::ident::MAX_LEN
                    ),
                );
                continue;
            }
            if let Some(e) = self.event(key, value) {
                out.push(e);
            }
        }
        out
    }

    fn event(&mut self, key: &MarkedScalarNode, node: &Node) -> Option<EventDef> {
        let what = format!("event `{}`", key.as_str());
        let map = self.cx.mapping(node, &what)?;
        unknown_keys(&mut self.cx, map, EVENT_KEYS, &what);
        // Every part is read, so that all its problems are reported at once.
        let when = match map.get_node("when") {
            Some(n) => self.when(n, &what),
            None => Some(Vec::new()),
        };
        let payload = match map.get_node("payload") {
            Some(n) => self.mapping(n),
            None => Pointer::parse("/").ok().map(Mapping::Pointer),
        };
        let schema = match map.get_node("schema") {
            Some(n) => self.schema(n, &what).map(Some),
            None => Some(None),
        };
        let route = match map.get_node("route") {
            Some(n) => self.route(n, &what),
            None => {
                self.cx.error(
                    key.span(),
                    format!("{what} needs `route`"),
                    "say who receives it, e.g. `route: {bot: shop, contact: /customer/id}`",
                );
                None
            }
        };
        Some(EventDef {
            name: key.as_str().to_owned(),
            when: when?,
            payload: payload?,
            schema: schema?,
            route: route?,
            origin: self.cx.origin(key.span()),
        })
    }

    fn when(&mut self, node: &Node, what: &str) -> Option<Vec<Condition>> {
        let map = self.cx.mapping(node, &format!("`when` of {what}"))?;
        unknown_keys(&mut self.cx, map, WHEN_KEYS, &format!("`when` of {what}"));
        let mut out = Vec::new();
        let mut ok = true;
        for (part, conds) in map.iter() {
            let Some(conds) = self.cx.mapping(conds, &format!("`when.{}`", part.as_str())) else {
                ok = false;
                continue;
            };
            for (k, v) in conds.iter() {
                let values = match v {
                    Node::Sequence(list) => list.iter().map(to_json).collect(),
                    other => vec![to_json(other)],
                };
                match part.as_str() {
                    "header" | "query" => {
                        let texts: Vec<String> = values
                            .iter()
                            .map(|v| match v {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect();
                        let name = k.as_str().to_owned();
                        out.push(if part.as_str() == "header" {
                            Condition::Header(name.to_ascii_lowercase(), texts)
                        } else {
                            Condition::Query(name, texts)
                        });
                    }
                    "body" => match Pointer::parse(k.as_str()) {
                        Ok(p) => out.push(Condition::Body(p, values)),
                        Err(e) => {
                            self.cx.error(
                                k.span(),
                                e,
                                "a body condition is keyed by a JSON pointer, e.g. `/type: order.created`",
                            );
                            ok = false;
                        }
                    },
                    _ => {}
                }
            }
        }
        ok.then_some(out)
    }

    /// A payload mapping: pointers, templates, literals, objects and lists of them.
    fn mapping(&mut self, node: &Node) -> Option<Mapping> {
        match node {
            Node::Mapping(map) => {
                let mut fields = Vec::new();
                let mut ok = true;
                for (k, v) in map.iter() {
                    match self.mapping(v) {
                        Some(m) => fields.push((k.as_str().to_owned(), m)),
                        None => ok = false,
                    }
                }
                ok.then_some(Mapping::Object(fields))
            }
            Node::Sequence(list) => {
                let items: Option<Vec<Mapping>> = list.iter().map(|n| self.mapping(n)).collect();
                items.map(Mapping::Array)
            }
            Node::Scalar(s) if is_null(s) => Some(Mapping::Literal(Value::Null)),
            Node::Scalar(s) if !s.may_coerce() => self.scalar_mapping(s),
            Node::Scalar(s) => match to_json(node) {
                Value::String(_) => self.scalar_mapping(s),
                other => Some(Mapping::Literal(other)),
            },
        }
    }

    /// A string: a pointer (`/...`), a template (`{{ }}`) or a literal.
    fn scalar_mapping(&mut self, s: &MarkedScalarNode) -> Option<Mapping> {
        let text = s.as_str();
        if text.starts_with('/') {
            return match Pointer::parse(text) {
                Ok(p) => Some(Mapping::Pointer(p)),
                Err(e) => {
                    self.cx.error(
                        s.span(),
                        e,
                        "a value starting with `/` is a JSON pointer into the body, e.g. `/customer/id`",
                    );
                    None
                }
            };
        }
        if text.contains("{{") {
            return match template(text) {
                Ok(parts) => Some(Mapping::Template(parts)),
                Err(e) => {
                    self.cx.error(
                        s.span(),
                        e,
                        "a hole reads one value: `{{ body.customer.id }}`, `{{ headers.x-shop }}`, \
                         `{{ query.ref }}` or `{{ config.shopName }}`; use a `handler` for more",
                    );
                    None
                }
            };
        }
        Some(Mapping::Literal(Value::String(text.to_owned())))
    }

    fn schema(&mut self, node: &Node, what: &str) -> Option<Arc<jsonschema::Validator>> {
        let map = self.cx.mapping(node, &format!("`schema` of {what}"))?;
        match jsonschema::validator_for(&to_json(node)) {
            Ok(v) => Some(Arc::new(v)),
            Err(e) => {
                self.cx.error(
                    map.span(),
                    format!("`schema` of {what} is not a valid JSON Schema: {e}"),
                    "write a JSON Schema, e.g. `type: object` with `required:` and `properties:`",
                );
                None
            }
        }
    }

    fn route(&mut self, node: &Node, what: &str) -> Option<Route> {
        let map = self.cx.mapping(node, &format!("`route` of {what}"))?;
        unknown_keys(&mut self.cx, map, ROUTE_KEYS, &format!("`route` of {what}"));
        let bot = match map.get_node("bot") {
            Some(n) => {
                let s = self.cx.string(n, "`route.bot`")?;
                if !(self.is_bot)(s.as_str()) {
                    self.cx.error(
                        s.span(),
                        format!(
                            "`route.bot` of {what} names an unknown bot `{}`",
                            s.as_str()
                        ),
                        "the bot is a directory under bots/ with a bot.yaml",
                    );
                    return None;
                }
                Some(s.as_str().to_owned())
            }
            None => None,
        };
        let who = match (map.get_node("contact"), map.get_node("subscriber")) {
            (Some(_), Some(s)) => {
                self.cx.error(
                    s.span(),
                    format!("`route` of {what} has both `contact` and `subscriber`"),
                    "`contact` is the platform's customer id (a pointer), `subscriber` a \
                     subscriber id as it is; keep one",
                );
                return None;
            }
            (Some(c), None) => Who::Contact(self.pointer(c, "`route.contact`")?),
            (None, Some(s)) => Who::Subscriber(self.mapping(s)?),
            (None, None) => {
                self.cx.error(
                    map.span(),
                    format!("`route` of {what} needs `contact` or `subscriber`"),
                    "e.g. `contact: /customer/id` (the platform's customer id)",
                );
                return None;
            }
        };
        Some(Route {
            bot,
            who,
            origin: self.cx.origin(map.span()),
        })
    }

    /// `handler: file.js` next to the yaml.
    fn handler(&mut self, node: &Node) -> Option<Code> {
        let s = self.cx.string(node, "`handler`")?;
        let path = self.dir.join(s.as_str());
        match std::fs::read_to_string(&path) {
            Ok(source) => {
                let code = Code {
                    kind: CodeKind::Body,
                    source,
                    origin: crate::bot::model::Origin {
                        file: path,
                        line: 1,
                        col: 1,
                    },
                };
                if let Some(d) = (self.check)(&code) {
                    self.cx.diags.push(d);
                    return None;
                }
                Some(code)
            }
            Err(e) => {
                self.cx.error(
                    s.span(),
                    format!("cannot read the handler `{}`: {e}", path.display()),
                    "the handler is a JavaScript file next to this yaml",
                );
                None
            }
        }
    }

    fn pointer(&mut self, node: &Node, what: &str) -> Option<Pointer> {
        let s = self.cx.string(node, what)?;
        match Pointer::parse(s.as_str()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.cx
                    .error(s.span(), format!("{what}: {e}"), "e.g. `/customer/id`");
                None
            }
        }
    }

    fn number(&mut self, node: &Node, what: &str) -> Option<u64> {
        let s = self.cx.string(node, what)?;
        match s.as_str().trim().parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                self.cx.error(
                    s.span(),
                    format!("{what} must be a whole number, not `{}`", s.as_str()),
                    "",
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let s = self.cx.string(node, what)?;
        match duration(s.as_str()) {
            Some(d) => Some(d),
            None => {
                self.cx.error(
                    s.span(),
                    format!("{what} `{}` is not a duration", s.as_str()),
                    "write seconds, or with a unit: `300s`, `5m`, `72h`, `7d`",
                );
                None
            }
        }
    }
}

/// `300`, `300s`, `5m`, `72h`, `7d`.
fn duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// `1024`, `512KiB`, `1MiB`, `1kb`, `2MB`.
fn size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "kb" | "k" => 1 << 10,
        "mib" | "mb" | "m" => 1 << 20,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The `{name}` placeholders of a signed-content template.
fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    out
}

/// A payload template: text with `{{ root.path }}` holes.
pub(crate) fn template(text: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(TemplatePart::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` without `}}}}` in `{text}`"))?;
        let expr = after[..close].trim();
        parts.push(hole(expr)?);
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// `body.customer.id`, `body.items[0].sku`, `headers.x-shopify-topic`, `config.shopName`.
fn hole(expr: &str) -> Result<TemplatePart, String> {
    let (root, path) = expr.split_once('.').unwrap_or((expr, ""));
    let root = match root {
        "body" => Root::Body,
        "headers" => Root::Headers,
        "query" => Root::Query,
        "config" => Root::Config,
        other => {
            return Err(format!(
                "`{{{{ {expr} }}}}` reads `{other}`; a template reads body, headers, query or config"
            ));
        }
    };
    // A hole reads one value: a path of names and indexes, nothing to compute.
    let plain =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']' | '$' | '@');
    if path.is_empty() && root != Root::Body && root != Root::Config {
        return Err(format!("`{{{{ {expr} }}}}` names no header or parameter"));
    }
    if let Some(bad) = path.chars().find(|c| !plain(*c)) {
        return Err(format!(
            "`{{{{ {expr} }}}}` is not a path (`{bad}`): a hole reads one value and computes nothing"
        ));
    }
    let mut segs = Vec::new();
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        // `items[0]` → `items`, `0`
        let mut parts = seg.split('[');
        if let Some(first) = parts.next().filter(|f| !f.is_empty()) {
            segs.push(first.to_owned());
        }
        for idx in parts {
            let idx = idx
                .strip_suffix(']')
                .ok_or_else(|| format!("`{expr}`: `[` without `]`"))?;
            segs.push(idx.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
    }
    if root == Root::Headers {
        segs = segs.into_iter().map(|s| s.to_ascii_lowercase()).collect();
    }
    Ok(TemplatePart::Path(root, segs))
}
