//! The attack run: set-up as A (and B, for controls), the attacks as B, A's re-read, the
//! clean-up. One request at a time, through [`Client`] (budget, rate, timeout, 429).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use rand::Rng;
use serde_json::{Map, Value};

use super::client::{Answer, Client, Credentials, SendError};
use super::gen::{type_of, Gen};
use super::report::{HttpReport, Row};
use super::spec::{
    self, is_tenant_field, norm, properties_of, required_of, Operation, Resource, Spec,
};
use super::{Attack, Cell, HttpProbeConfig, HttpProbeError};
use crate::outcome::Verdict;

/// Who sends a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    A,
    B,
}

/// An object of one tenant in one resource.
#[derive(Debug, Clone)]
struct Obj {
    /// Its id as the API returns it (a string or a number).
    id: Value,
    /// Parent path parameters → the parents' ids.
    parents: Vec<(String, String)>,
    /// The body it was created with (empty when harvested from a list).
    body: Map<String, Value>,
    /// What A (or B) read back right after creating it.
    repr: Value,
    /// Whether the probe created it (and so may change and delete it).
    created: bool,
}

/// Headers that commonly carry a tenant.
const TENANT_HEADERS: [&str; 6] = [
    "X-Tenant-Id",
    "X-Tenant",
    "X-Org-Id",
    "X-Organization-Id",
    "X-Account-Id",
    "X-Workspace-Id",
];

struct Run<'a> {
    spec: &'a Spec,
    config: &'a HttpProbeConfig,
    client: Client,
    marker_a: String,
    marker_b: String,
    seq: u32,
    a: Vec<Vec<Obj>>,
    b: Vec<Vec<Obj>>,
    /// Optional fields a successful create needed, per resource.
    shapes: Vec<Option<Vec<String>>>,
    /// Values a 422 told us (`must be one of: todo, …`), per resource.
    hints: Vec<Map<String, Value>>,
    /// Why a resource cannot be probed with tenant credentials at all.
    refused: Vec<Option<String>>,
    cells: Vec<BTreeMap<Attack, Cell>>,
    /// Everything created: (creator, path of the item), in creation order.
    created: Vec<(Who, String)>,
    notes: Vec<String>,
    tenant_a_id: Option<String>,
    tenant_b_id: Option<String>,
    /// Whether the API shows tenant ids as JSON numbers.
    tenant_numeric: bool,
}

/// Runs the whole probe.
pub async fn run(config: &HttpProbeConfig) -> Result<HttpReport, HttpProbeError> {
    let started = Instant::now();
    let mut client = Client::new(&config.base, config.limits.clone()).await?;
    let (doc_text, source) = load_document(config, &mut client).await?;
    let doc = spec::parse_document(&doc_text)?;
    let mut spec = spec::learn(&doc)?;
    spec.resources.retain(|r| {
        !config
            .exclude
            .iter()
            .any(|p| r.collection.starts_with(p.as_str()))
    });
    client.set_base_path(&spec.base_path);
    let n = spec.resources.len();
    let mut rng = rand::thread_rng();
    let tag: String = (0..8)
        .map(|_| char::from(b"abcdefghijkmnpqrstuvwxyz23456789"[rng.gen_range(0..32)]))
        .collect();
    let mut run = Run {
        spec: &spec,
        config,
        client,
        marker_a: format!("tga{tag}"),
        marker_b: format!("tgb{tag}"),
        seq: 0,
        a: vec![Vec::new(); n],
        b: vec![Vec::new(); n],
        shapes: vec![None; n],
        hints: vec![Map::new(); n],
        refused: vec![None; n],
        cells: vec![BTreeMap::new(); n],
        created: Vec::new(),
        notes: spec.notes.clone(),
        tenant_a_id: config.tenant_a_id.clone(),
        tenant_b_id: config.tenant_b_id.clone(),
        tenant_numeric: false,
    };
    if !run.client.writes_allowed() {
        run.notes.push(format!(
            "{} is not loopback and --allow-writes was not given: only GET requests were sent; A's and B's rows were taken from their lists and every write attack is inconclusive",
            run.client.base()
        ));
    }
    // The first request proves the target answers at all: a connection error is exit 2.
    run.reachability().await?;
    let order = dependency_order(&spec.resources);
    run.setup(&order).await;
    run.learn_tenant_ids();
    for &r in &order {
        run.read_attacks(r).await;
    }
    for &r in &order {
        run.write_attacks(r).await;
    }
    for &r in &order {
        run.unique(r).await;
    }
    for &r in &order {
        run.reread(r).await;
    }
    for &r in order.iter().rev() {
        run.delete(r).await;
    }
    run.cleanup().await;
    let rows = spec
        .resources
        .iter()
        .zip(run.cells)
        .map(|(r, cells)| Row {
            resource: r.name.clone(),
            collection: r.collection.clone(),
            item: r.item.clone(),
            cells,
        })
        .collect();
    Ok(HttpReport {
        base: run.client.base().to_string(),
        openapi: source,
        openapi_version: spec.version.clone(),
        tenant_a_headers: config.tenant_a.names(),
        tenant_b_headers: config.tenant_b.names(),
        rows,
        notes: run.notes,
        requests: run.client.sent(),
        max_requests: config.limits.max_requests,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

async fn load_document(
    config: &HttpProbeConfig,
    client: &mut Client,
) -> Result<(String, String), HttpProbeError> {
    let src = config
        .openapi
        .clone()
        .unwrap_or_else(|| format!("{}/openapi.json", config.base.trim_end_matches('/')));
    if src.starts_with("http://") || src.starts_with("https://") {
        // Fetched with A's credentials: some APIs serve their document to users only.
        let ans = client
            .send(Some(&config.tenant_a), "GET", &src, None, &[])
            .await
            .map_err(|e| HttpProbeError::Connection(format!("GET {src}: {e}")))?;
        if !ans.ok() {
            return Err(HttpProbeError::OpenApi(format!(
                "GET {src} answered {} (give --openapi FILE)",
                ans.status
            )));
        }
        Ok((ans.text, src))
    } else {
        let text = std::fs::read_to_string(&src)
            .map_err(|e| HttpProbeError::OpenApi(format!("reading {src}: {e}")))?;
        Ok((text, src))
    }
}

/// Resources ordered so that parents and referenced resources come first.
fn dependency_order(resources: &[Resource]) -> Vec<usize> {
    let deps: Vec<Vec<usize>> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut d: Vec<usize> = r.parents.iter().map(|(_, p)| *p).collect();
            d.extend(r.body_refs.iter().map(|f| f.target));
            d.retain(|&x| x != i);
            d
        })
        .collect();
    let mut state = vec![0u8; resources.len()];
    let mut out = Vec::new();
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], out: &mut Vec<usize>) {
        if state[i] != 0 {
            return; // done, or on the stack (a cycle: broken here)
        }
        state[i] = 1;
        for &d in &deps[i] {
            visit(d, deps, state, out);
        }
        state[i] = 2;
        out.push(i);
    }
    for i in 0..resources.len() {
        visit(i, &deps, &mut state, &mut out);
    }
    out
}

fn id_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
        .replace("%5F", "_")
        .replace("%2E", ".")
        .replace("%7E", "~")
}

fn with_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let q = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter())
        .finish();
    format!("{path}{}{q}", if path.contains('?') { '&' } else { '?' })
}

/// Fills a template: `{param}` from `values`.
fn fill(template: &str, values: &[(String, String)]) -> Option<String> {
    let mut out = String::new();
    for seg in template.split('/') {
        if seg.is_empty() {
            continue;
        }
        out.push('/');
        if seg.starts_with('{') && seg.ends_with('}') {
            let name = &seg[1..seg.len() - 1];
            let v = values.iter().find(|(k, _)| k == name)?;
            out.push_str(&enc(&v.1));
        } else {
            out.push_str(seg);
        }
    }
    Some(out)
}

/// The object of an answer, out of a `{data: …}` envelope.
fn unwrap_one(v: &Value) -> &Value {
    match v.get("data") {
        Some(d) if d.is_object() && v.get("id").is_none() => d,
        _ => v,
    }
}

/// The items of a list answer: a bare array, or the array in an envelope.
fn items_of(v: &Value) -> Vec<&Value> {
    if let Some(a) = v.as_array() {
        return a.iter().collect();
    }
    let Some(obj) = v.as_object() else {
        return Vec::new();
    };
    for key in [
        "data", "items", "results", "records", "values", "content", "entries", "rows", "list",
    ] {
        match obj.get(key) {
            Some(Value::Array(a)) => return a.iter().collect(),
            Some(d @ Value::Object(_)) => {
                let inner = items_of(d);
                if !inner.is_empty() {
                    return inner;
                }
            }
            _ => {}
        }
    }
    obj.values()
        .find_map(|x| match x {
            Value::Array(a) if a.iter().any(Value::is_object) => Some(a.iter().collect()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The id of an object: `id`, the item path parameter, or `<singular>_id`.
fn id_of(v: &Value, res: &Resource) -> Option<Value> {
    let v = unwrap_one(v);
    let obj = v.as_object()?;
    if let Some(id) = obj.get("id").filter(|x| x.is_string() || x.is_number()) {
        return Some(id.clone());
    }
    let wanted: Vec<String> = res
        .item_param()
        .into_iter()
        .map(|p| norm(&p))
        .chain([format!("{}id", res.singular())])
        .collect();
    obj.iter()
        .find(|(k, x)| wanted.contains(&norm(k)) && (x.is_string() || x.is_number()))
        .map(|(_, x)| x.clone())
}

/// A random id of the same shape: a UUID of the same version, an integer, or a string
/// with the same prefix and character classes.
fn random_like(id: &Value) -> Value {
    let mut rng = rand::thread_rng();
    match id {
        Value::Number(n) => {
            let base = n.as_i64().unwrap_or(0).max(0);
            Value::from(base + 7_000_000 + rng.gen_range(0..1_000_000))
        }
        Value::String(s) => {
            if let Ok(u) = uuid::Uuid::parse_str(s) {
                let r = if u.get_version_num() == 7 {
                    uuid::Uuid::now_v7()
                } else {
                    uuid::Uuid::new_v4()
                };
                let text = if s.contains('-') {
                    r.hyphenated().to_string()
                } else {
                    r.simple().to_string()
                };
                let text = if s.chars().any(|c| c.is_ascii_uppercase()) {
                    text.to_uppercase()
                } else {
                    text
                };
                return Value::String(text);
            }
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && s.len() < 6 {
                let base: u64 = s.parse().unwrap_or(0);
                return Value::String((base + 7_000_000 + rng.gen_range(0..1_000_000)).to_string());
            }
            let keep = s.rfind(['_', '-']).map(|i| i + 1).unwrap_or(0);
            let mut out: String = s[..keep].to_string();
            for c in s[keep..].chars() {
                out.push(if c.is_ascii_digit() {
                    char::from(b'0' + rng.gen_range(0..10))
                } else if c.is_ascii_lowercase() {
                    char::from(b'a' + rng.gen_range(0..26))
                } else if c.is_ascii_uppercase() {
                    char::from(b'A' + rng.gen_range(0..26))
                } else {
                    c
                });
            }
            Value::String(out)
        }
        other => other.clone(),
    }
}

/// An id in the JSON type the field's schema wants.
fn as_field_value(schema: Option<&Value>, id: &Value) -> Value {
    let want = schema.and_then(type_of);
    match (want, id) {
        (Some("string"), Value::Number(n)) => Value::String(n.to_string()),
        (Some("integer") | Some("number"), Value::String(s)) => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| id.clone()),
        _ => id.clone(),
    }
}

fn excerpt(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

fn around(text: &str, needle: &str) -> String {
    match text.find(needle) {
        Some(i) => {
            let start = text[..i]
                .char_indices()
                .rev()
                .nth(60)
                .map(|(j, _)| j)
                .unwrap_or(0);
            let rest = &text[start..];
            excerpt(rest, 160)
        }
        None => excerpt(text, 160),
    }
}

fn uuid_re() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
            .expect("static regex")
    })
}

fn time_re() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
            .expect("static regex")
    })
}

/// Keys whose values change between requests by themselves.
fn volatile_key(k: &str) -> bool {
    let k = norm(k);
    [
        "requestid",
        "traceid",
        "correlationid",
        "spanid",
        "timestamp",
        "updatedat",
        "modifiedat",
        "lastmodified",
        "lastusedat",
        "etag",
        "servertime",
        "now",
    ]
    .contains(&k.as_str())
}

/// An answer with volatile parts masked (the ids themselves, UUIDs, timestamps,
/// request ids), for comparing two answers.
fn mask(v: &Value, ids: &[String]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            // Longest first, whole words only: "1" must not eat into "7000123" or "v1".
            let mut ids: Vec<&String> = ids.iter().filter(|i| !i.is_empty()).collect();
            ids.sort_by_key(|i| std::cmp::Reverse(i.len()));
            for id in ids {
                if let Ok(re) = regex::Regex::new(&format!(
                    r"(^|[^0-9A-Za-z_]){}($|[^0-9A-Za-z_])",
                    regex::escape(id)
                )) {
                    s = re.replace_all(&s, "${1}<id>${2}").into_owned();
                }
            }
            let s = uuid_re().replace_all(&s, "<uuid>");
            Value::String(time_re().replace_all(&s, "<time>").into_owned())
        }
        Value::Number(n) if ids.contains(&n.to_string()) => Value::String("<id>".into()),
        Value::Array(a) => Value::Array(a.iter().map(|x| mask(x, ids)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| {
                    if volatile_key(k) {
                        (k.clone(), Value::String("<volatile>".into()))
                    } else {
                        (k.clone(), mask(x, ids))
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn masked_answer(a: &Answer, ids: &[String]) -> Value {
    if a.json.is_null() {
        mask(&Value::String(a.text.clone()), ids)
    } else {
        mask(&a.json, ids)
    }
}

fn send_err(e: &SendError) -> Cell {
    Cell::new(Verdict::Inconclusive, format!("not attacked: {e}"))
}

/// The parameter names that carry a page size, a cursor, a page number.
fn page_size_param(op: &Operation) -> Option<String> {
    op.query()
        .find(|p| {
            [
                "limit",
                "perpage",
                "pagesize",
                "size",
                "count",
                "maxresults",
                "first",
                "top",
            ]
            .contains(&norm(&p.name).as_str())
        })
        .map(|p| p.name.clone())
}

fn cursor_param(op: &Operation) -> Option<String> {
    op.query()
        .find(|p| {
            [
                "cursor",
                "pagetoken",
                "after",
                "startingafter",
                "next",
                "continuationtoken",
                "nexttoken",
                "pagecursor",
                "starttoken",
            ]
            .contains(&norm(&p.name).as_str())
        })
        .map(|p| p.name.clone())
}

fn page_param(op: &Operation) -> Option<String> {
    op.query()
        .find(|p| ["page", "pagenumber", "pageno"].contains(&norm(&p.name).as_str()))
        .map(|p| p.name.clone())
}

/// Where the next page is: a `Link: <…>; rel="next"` header, a `next` URL in the body, or a
/// cursor token in the body (returned as the value for the cursor parameter).
enum Next {
    Url(String),
    Token(String),
}

fn next_of(a: &Answer) -> Option<Next> {
    if let Some(link) = a.headers.get("link").and_then(|v| v.to_str().ok()) {
        for part in link.split(',') {
            if part.contains("rel=\"next\"") || part.contains("rel=next") {
                if let (Some(s), Some(e)) = (part.find('<'), part.find('>')) {
                    return Some(Next::Url(part[s + 1..e].to_string()));
                }
            }
        }
    }
    fn scan(v: &Value, depth: usize) -> Option<Next> {
        let obj = v.as_object()?;
        for (k, x) in obj {
            let n = norm(k);
            if let Some(s) = x.as_str().filter(|s| !s.is_empty()) {
                if n == "next" || n == "nextlink" || n == "nexturl" || n == "nextpage" {
                    if s.starts_with('/') || s.starts_with("http") {
                        return Some(Next::Url(s.to_string()));
                    }
                    return Some(Next::Token(s.to_string()));
                }
                if [
                    "nextcursor",
                    "nextpagetoken",
                    "nexttoken",
                    "continuationtoken",
                    "cursor",
                ]
                .contains(&n.as_str())
                {
                    return Some(Next::Token(s.to_string()));
                }
            }
        }
        if depth < 2 {
            for key in [
                "links",
                "_links",
                "meta",
                "pagination",
                "paging",
                "page_info",
                "pageInfo",
            ] {
                if let Some(inner) = obj.get(key) {
                    if let Some(Value::Object(m)) =
                        inner.get("next").cloned().filter(Value::is_object)
                    {
                        if let Some(h) = m.get("href").and_then(Value::as_str) {
                            return Some(Next::Url(h.to_string()));
                        }
                    }
                    if let Some(n) = scan(inner, depth + 1) {
                        return Some(n);
                    }
                }
            }
        }
        None
    }
    scan(&a.json, 0)
}

impl Run<'_> {
    fn creds(&self, who: Who) -> &Credentials {
        match who {
            Who::A => &self.config.tenant_a,
            Who::B => &self.config.tenant_b,
        }
    }

    fn objs(&self, who: Who, r: usize) -> &[Obj] {
        match who {
            Who::A => &self.a[r],
            Who::B => &self.b[r],
        }
    }

    fn res(&self, r: usize) -> &Resource {
        &self.spec.resources[r]
    }

    fn set(&mut self, r: usize, attack: Attack, cell: Cell) {
        self.cells[r].insert(attack, cell);
    }

    async fn send(
        &mut self,
        who: Who,
        method: &str,
        path: &str,
        body: Option<&Value>,
        extra: &[(String, String)],
        op: Option<&Operation>,
    ) -> Result<Answer, SendError> {
        let mut extra = extra.to_vec();
        if let Some(h) = op.and_then(|o| o.idempotency_header.clone()) {
            extra.push((h, uuid::Uuid::new_v4().to_string()));
        }
        let creds = self.creds(who).clone();
        self.client
            .send(Some(&creds), method, path, body, &extra)
            .await
    }

    /// The collection path with the parents of `who`'s own objects (or those given).
    fn collection_path(
        &self,
        r: usize,
        who: Who,
        parents: Option<&[(String, String)]>,
    ) -> Option<String> {
        let res = self.res(r);
        let values: Vec<(String, String)> = match parents {
            Some(p) => p.to_vec(),
            None => res
                .parents
                .iter()
                .map(|(param, p)| Some((param.clone(), id_str(&self.objs(who, *p).first()?.id))))
                .collect::<Option<Vec<_>>>()?,
        };
        fill(&res.collection, &values)
    }

    fn item_path(&self, r: usize, parents: &[(String, String)], id: &Value) -> Option<String> {
        let res = self.res(r);
        let t = res.item.as_deref()?;
        let mut values = parents.to_vec();
        values.push((res.item_param()?, id_str(id)));
        fill(t, &values)
    }

    /// Evidence that an answer carries A's data of resource `r`: A's marker, or one of A's
    /// ids (as text when long enough to be unambiguous, else as an item's id). Callers search
    /// 2xx answers only: an error that echoes the request (a cursor, a path) is not data
    /// that crossed.
    fn a_data(&self, r: usize, a: &Answer) -> Option<String> {
        if a.text.contains(&self.marker_a) {
            return Some(format!(
                "A's marker {} is in the answer: {}",
                self.marker_a,
                around(&a.text, &self.marker_a)
            ));
        }
        let res = self.res(r);
        let items = items_of(&a.json);
        for o in &self.a[r] {
            let s = id_str(&o.id);
            if s.len() >= 8 && a.text.contains(&s) {
                return Some(format!(
                    "A's {} id {s} is in the answer: {}",
                    res.name,
                    around(&a.text, &s)
                ));
            }
            let hit = items
                .iter()
                .any(|it| id_of(it, res).as_ref() == Some(&o.id))
                || id_of(&a.json, res).as_ref() == Some(&o.id);
            if hit {
                return Some(format!(
                    "an item with A's {} id {s} is in the answer",
                    res.name
                ));
            }
        }
        None
    }

    // ---- set-up ------------------------------------------------------------------

    async fn reachability(&mut self) -> Result<(), HttpProbeError> {
        // One GET as A that must get an HTTP answer, whatever its status.
        let first = (0..self.spec.resources.len())
            .find(|&r| self.res(r).list.is_some() && self.res(r).parents.is_empty());
        let path = match first {
            Some(r) => self.res(r).collection.clone(),
            None => "/".to_string(),
        };
        match self.send(Who::A, "GET", &path, None, &[], None).await {
            Ok(_) => Ok(()),
            Err(SendError::Transport(e)) => {
                Err(HttpProbeError::Connection(format!("GET {path}: {e}")))
            }
            Err(_) => Ok(()),
        }
    }

    async fn setup(&mut self, order: &[usize]) {
        for &r in order {
            for who in [Who::A, Who::B] {
                // A needs two rows where a cursor can page between them.
                let want = match who {
                    Who::A
                        if self
                            .res(r)
                            .list
                            .as_ref()
                            .is_some_and(|l| page_size_param(l).is_some()) =>
                    {
                        2
                    }
                    _ => 1,
                };
                for _ in 0..want {
                    match self.create(who, r).await {
                        Ok(Some(o)) => self.push(who, r, o),
                        Ok(None) => break,
                        Err(why) => {
                            if self.refused[r].is_none() {
                                self.notes.push(format!(
                                    "{} {}: {why}",
                                    self.who_name(who),
                                    self.res(r).collection
                                ));
                            }
                            break;
                        }
                    }
                }
            }
        }
        // What could not be created is taken from the tenants' own lists.
        for &r in order {
            // Under a parent that refuses tenant A's own credential (an admin collection,
            // say), the child is no endpoint of a tenant either: n/a, not inconclusive.
            // Parents come first in `order`, so their refusal is already known here.
            if self.refused[r].is_none() {
                let refused_parent = self.res(r).parents.iter().find_map(|(_, p)| {
                    self.refused[*p]
                        .as_ref()
                        .map(|_| self.res(*p).collection.clone())
                });
                if let Some(parent) = refused_parent {
                    self.refused[r] = Some(format!(
                        "its parent {parent} refuses tenant A's own credential: not an endpoint of a tenant"
                    ));
                    continue;
                }
            }
            for who in [Who::A, Who::B] {
                if self.objs(who, r).is_empty() && self.refused[r].is_none() {
                    self.harvest(who, r).await;
                }
            }
        }
    }

    fn who_name(&self, who: Who) -> &'static str {
        match who {
            Who::A => "tenant A",
            Who::B => "tenant B",
        }
    }

    fn push(&mut self, who: Who, r: usize, o: Obj) {
        match who {
            Who::A => self.a[r].push(o),
            Who::B => self.b[r].push(o),
        }
    }

    /// A fresh marker-carrying value generator for `who`.
    fn body_for(
        &mut self,
        who: Who,
        schema: &Value,
        extra: &[String],
        fixed: &Map<String, Value>,
        all: bool,
    ) -> Value {
        let marker = match who {
            Who::A => self.marker_a.clone(),
            Who::B => self.marker_b.clone(),
        };
        let mut g = Gen {
            marker: &marker,
            seq: &mut self.seq,
        };
        g.object(schema, extra, fixed, all)
    }

    /// The references `who` fills in: own objects of the targets (and its tenant id).
    fn own_refs(&self, who: Who, r: usize, schema: &Value) -> Map<String, Value> {
        let props: BTreeMap<String, Value> = properties_of(schema).into_iter().collect();
        let mut fixed = Map::new();
        for f in &self.res(r).body_refs {
            if let Some(o) = self.objs(who, f.target).first() {
                fixed.insert(f.field.clone(), as_field_value(props.get(&f.field), &o.id));
            }
        }
        let tid = match who {
            Who::A => self.tenant_a_id.clone(),
            Who::B => self.tenant_b_id.clone(),
        };
        if let Some(t) = tid {
            for f in &self.res(r).tenant_fields {
                fixed.insert(f.clone(), self.tenant_value(&t));
            }
        }
        fixed
    }

    /// A valid create body for `who` (the shape a first success needed), with strings
    /// from `who`'s generator, and `overrides` applied.
    fn create_body(&mut self, who: Who, r: usize, overrides: &Map<String, Value>) -> Option<Value> {
        self.create_body_only(who, r, overrides, None)
    }

    /// As [`Run::create_body`]; with `only_ref`, other optional references are left out
    /// (an API may want exactly one of them, as "a task or a document").
    fn create_body_only(
        &mut self,
        who: Who,
        r: usize,
        overrides: &Map<String, Value>,
        only_ref: Option<&str>,
    ) -> Option<Value> {
        let schema = self
            .res(r)
            .create
            .as_ref()?
            .body
            .clone()
            .unwrap_or(Value::Object(Map::new()));
        let shape = self.shapes[r].clone().unwrap_or_default();
        let mut fixed = self.own_refs(who, r, &schema);
        let req = required_of(&schema);
        fixed.retain(|k, _| req.contains(k) || shape.contains(k));
        for (k, v) in &self.hints[r] {
            fixed.insert(k.clone(), v.clone());
        }
        for (k, v) in overrides {
            fixed.insert(k.clone(), v.clone());
        }
        let mut body = self.body_for(who, &schema, &shape, &fixed, false);
        if let Some(o) = body.as_object_mut() {
            if let Some(keep) = only_ref {
                for f in &self.spec.resources[r].body_refs {
                    if !f.required && f.field != keep {
                        o.remove(&f.field);
                    }
                }
            }
            for (k, v) in overrides {
                o.insert(k.clone(), v.clone());
            }
        }
        Some(body)
    }

    /// Creates one object as `who`: `Ok(None)` when the resource has no create.
    async fn create(&mut self, who: Who, r: usize) -> Result<Option<Obj>, String> {
        let Some(op) = self.res(r).create.clone() else {
            return Ok(None);
        };
        let res = self.res(r).clone();
        let mut parents = Vec::new();
        for (param, p) in &res.parents {
            let Some(o) = self.objs(who, *p).first() else {
                return Err(format!(
                    "no {} of its own to create under",
                    self.res(*p).name
                ));
            };
            parents.push((param.clone(), id_str(&o.id)));
        }
        let Some(path) = fill(&res.collection, &parents) else {
            return Err("cannot fill the collection path".into());
        };
        let schema = op.body.clone().unwrap_or(Value::Object(Map::new()));
        let own = self.own_refs(who, r, &schema);
        let req = required_of(&schema);
        // Shapes to try: the one that worked before; required only; plus each optional
        // reference; plus everything optional.
        let mut shapes: Vec<(Vec<String>, bool)> = Vec::new();
        if let Some(s) = self.shapes[r].clone() {
            shapes.push((s, false));
        }
        shapes.push((Vec::new(), false));
        for f in res
            .body_refs
            .iter()
            .filter(|f| !f.required && own.contains_key(&f.field))
        {
            shapes.push((vec![f.field.clone()], false));
        }
        shapes.push((Vec::new(), true));
        let mut last = String::from("no attempt");
        let mut hints: Map<String, Value> = Map::new();
        let mut drop: Vec<String> = Vec::new();
        let mut attempts = shapes
            .into_iter()
            .collect::<std::collections::VecDeque<_>>();
        let mut retried = false;
        while let Some((extra, all)) = attempts.pop_front() {
            let mut fixed = own.clone();
            fixed.retain(|k, _| req.contains(k) || extra.contains(k) || all);
            for (k, v) in &hints {
                fixed.insert(k.clone(), v.clone());
            }
            let mut body = self.body_for(who, &schema, &extra, &fixed, all);
            if let Some(o) = body.as_object_mut() {
                for d in &drop {
                    if !req.contains(d) && !hints.contains_key(d) {
                        o.remove(d);
                    }
                }
            }
            let ans = match self
                .send(who, "POST", &path, Some(&body), &[], Some(&op))
                .await
            {
                Ok(a) => a,
                Err(e) => return Err(format!("POST {path}: {e}")),
            };
            // A 422 that names fields: take an allowed value it lists, drop an optional
            // field it rejects, and try the same shape once more.
            if (ans.status == 400 || ans.status == 422) && !retried {
                let errs = field_errors(&ans.json);
                let mut learned = false;
                for (field, message) in errs {
                    if let Some(v) = allowed_value(&message) {
                        learned |= hints.insert(field.clone(), Value::String(v)).is_none();
                    } else if !req.contains(&field)
                        && body.get(&field).is_some()
                        && !drop.contains(&field)
                    {
                        drop.push(field);
                        learned = true;
                    }
                }
                if learned {
                    retried = true;
                    attempts.push_front((extra, all));
                    last = format!(
                        "POST {path} answered {}: {}",
                        ans.status,
                        excerpt(&ans.text, 200)
                    );
                    continue;
                }
            }
            if ans.status == 401 || ans.status == 403 {
                if who == Who::A {
                    self.refused_create(r, &ans);
                }
                return Err(format!("POST {path} answered {}", ans.status));
            }
            if !ans.ok() {
                retried = false;
                last = format!(
                    "POST {path} answered {}: {}",
                    ans.status,
                    excerpt(&ans.text, 200)
                );
                continue;
            }
            if !hints.is_empty() {
                self.hints[r] = hints.clone();
            }
            let id = id_of(&ans.json, &res).or_else(|| {
                let loc = ans.headers.get("location")?.to_str().ok()?;
                Some(Value::String(loc.rsplit('/').next()?.to_string()))
            });
            let Some(id) = id else {
                return Err(format!("POST {path} answered {} without an id", ans.status));
            };
            if self.shapes[r].is_none() {
                let mut s = extra.clone();
                if all {
                    s = properties_of(&schema).into_iter().map(|(k, _)| k).collect();
                }
                self.shapes[r] = Some(s);
            }
            let mut obj = Obj {
                id: id.clone(),
                parents: parents.clone(),
                body: body.as_object().cloned().unwrap_or_default(),
                repr: unwrap_one(&ans.json).clone(),
                created: true,
            };
            if let Some(item) = self.item_path(r, &parents, &id) {
                self.created.push((who, item.clone()));
                if res.get.is_some() {
                    if let Ok(g) = self.send(who, "GET", &item, None, &[], None).await {
                        if g.ok() {
                            obj.repr = unwrap_one(&g.json).clone();
                        }
                    }
                }
            }
            return Ok(Some(obj));
        }
        Err(last)
    }

    fn refused_create(&mut self, r: usize, ans: &Answer) {
        // Only a refusal of A's list too makes the whole resource n/a (see harvest).
        if self.res(r).list.is_none() {
            self.refused[r] = Some(format!(
                "tenant A's own credential is refused here ({}): not an endpoint of a tenant",
                ans.status
            ));
        }
    }

    /// Takes `who`'s first listed object (not created by the probe: never changed or deleted).
    async fn harvest(&mut self, who: Who, r: usize) {
        if self.res(r).list.is_none() {
            return;
        }
        let Some(path) = self.collection_path(r, who, None) else {
            return;
        };
        let ans = match self.send(who, "GET", &path, None, &[], None).await {
            Ok(a) => a,
            Err(e) => {
                self.notes
                    .push(format!("{} GET {path}: {e}", self.who_name(who)));
                return;
            }
        };
        if (ans.status == 401 || ans.status == 403) && who == Who::A {
            self.refused[r] = Some(format!(
                "tenant A's own credential is refused here ({}): not an endpoint of a tenant",
                ans.status
            ));
            return;
        }
        let res = self.res(r).clone();
        let parents: Vec<(String, String)> = res
            .parents
            .iter()
            .filter_map(|(param, p)| Some((param.clone(), id_str(&self.objs(who, *p).first()?.id))))
            .collect();
        for item in items_of(&ans.json).into_iter().take(2) {
            if let Some(id) = id_of(item, &res) {
                let o = Obj {
                    id,
                    parents: parents.clone(),
                    body: Map::new(),
                    repr: item.clone(),
                    created: false,
                };
                self.push(who, r, o);
            }
        }
    }

    /// Tenant ids seen in A's and B's own objects (`tenant_id`, `orgId`, …).
    fn learn_tenant_ids(&mut self) {
        for who in [Who::A, Who::B] {
            let known = match who {
                Who::A => self.tenant_a_id.is_some(),
                Who::B => self.tenant_b_id.is_some(),
            };
            if known {
                continue;
            }
            let found = self.objs_all(who).find_map(|o| {
                unwrap_one(&o.repr).as_object()?.iter().find_map(|(k, v)| {
                    (is_tenant_field(k) && (v.is_string() || v.is_number())).then(|| v.clone())
                })
            });
            if found.as_ref().is_some_and(Value::is_number) {
                self.tenant_numeric = true;
            }
            let found = found.as_ref().map(id_str);
            match who {
                Who::A => self.tenant_a_id = found,
                Who::B => self.tenant_b_id = found,
            }
        }
    }

    fn objs_all(&self, who: Who) -> impl Iterator<Item = &Obj> {
        match who {
            Who::A => self.a.iter().flatten(),
            Who::B => self.b.iter().flatten(),
        }
    }

    /// Walks a list from `path` as `who`: every page up to the limit. Returns the answers.
    async fn walk(
        &mut self,
        who: Who,
        r: usize,
        path: &str,
        extra: &[(String, String)],
    ) -> Result<Vec<Answer>, SendError> {
        let list = self.res(r).list.clone();
        let cursor = list.as_ref().and_then(cursor_param);
        let page = list.as_ref().and_then(page_param);
        let mut out: Vec<Answer> = Vec::new();
        let mut next_path = path.to_string();
        let mut page_no = 1;
        for _ in 0..self.config.max_pages.max(1) {
            let ans = self.send(who, "GET", &next_path, None, extra, None).await?;
            let more = ans.ok();
            let next = if more { next_of(&ans) } else { None };
            let empty = items_of(&ans.json).is_empty();
            out.push(ans);
            next_path = match next {
                Some(Next::Url(u)) => u,
                Some(Next::Token(t)) => match &cursor {
                    Some(c) => with_query(path, &[(c.clone(), t)]),
                    None => break,
                },
                None => match (&page, more && !empty) {
                    (Some(p), true) => {
                        page_no += 1;
                        with_query(path, &[(p.clone(), page_no.to_string())])
                    }
                    _ => break,
                },
            };
        }
        Ok(out)
    }

    // ---- read attacks ------------------------------------------------------------

    async fn read_attacks(&mut self, r: usize) {
        if let Some(why) = self.refused[r].clone() {
            for a in Attack::ALL {
                self.set(r, a, Cell::new(Verdict::NotApplicable, why.clone()));
            }
            return;
        }
        let cell = self.list(r).await;
        self.set(r, Attack::List, cell);
        let cell = self.filter(r).await;
        self.set(r, Attack::Filter, cell);
        let cell = self.search(r).await;
        self.set(r, Attack::Search, cell);
        let cell = self.get(r).await;
        self.set(r, Attack::Get, cell);
        let cell = self.nested(r).await;
        self.set(r, Attack::Nested, cell);
        let cell = self.cursor(r).await;
        self.set(r, Attack::Cursor, cell);
        let cell = self.tenant_query(r).await;
        self.set(r, Attack::TenantQuery, cell);
        let cell = self.tenant_header(r).await;
        self.set(r, Attack::TenantHeader, cell);
    }

    /// A judged list walk: leak, 5xx, control (B's own row seen), or blocked.
    async fn judge_walk(
        &mut self,
        r: usize,
        path: &str,
        extra: &[(String, String)],
        what: &str,
    ) -> Cell {
        let pages = match self.walk(Who::B, r, path, extra).await {
            Ok(p) => p,
            Err(e) => return send_err(&e),
        };
        for p in &pages {
            if let Some(e) = p.ok().then(|| self.a_data(r, p)).flatten() {
                return Cell::new(Verdict::Leaked, format!("{what}: {e}"));
            }
            if p.status >= 500 {
                return Cell::new(
                    Verdict::ServerError,
                    format!("{what} answered {}: {}", p.status, excerpt(&p.text, 200)),
                );
            }
        }
        let first = &pages[0];
        if !first.ok() {
            return Cell::new(
                Verdict::Blocked,
                format!("{what} answered {}", first.status),
            );
        }
        Cell::new(
            Verdict::Blocked,
            format!(
                "{what}: {} page(s), none of A's rows or markers",
                pages.len()
            ),
        )
    }

    async fn list(&mut self, r: usize) -> Cell {
        if self.res(r).list.is_none() {
            return Cell::new(Verdict::NotApplicable, "no list operation");
        }
        if self.a[r].is_empty() {
            return Cell::new(
                Verdict::Inconclusive,
                "A has no row here to look for (it could neither create nor list one)",
            );
        }
        let Some(path) = self.collection_path(r, Who::B, None) else {
            return Cell::new(
                Verdict::Inconclusive,
                "B has no parent of its own to list under",
            );
        };
        let pages = match self.walk(Who::B, r, &path, &[]).await {
            Ok(p) => p,
            Err(e) => return send_err(&e),
        };
        for p in &pages {
            if let Some(e) = p.ok().then(|| self.a_data(r, p)).flatten() {
                return Cell::new(Verdict::Leaked, format!("GET {path} as B: {e}"));
            }
            if p.status >= 500 {
                return Cell::new(
                    Verdict::ServerError,
                    format!("GET {path} as B answered {}", p.status),
                );
            }
        }
        if !pages[0].ok() {
            return Cell::new(
                Verdict::Inconclusive,
                format!("control failed: B's own list answered {}", pages[0].status),
            );
        }
        let res = self.res(r).clone();
        let own_seen = self.b[r].iter().any(|o| {
            pages.iter().any(|p| {
                items_of(&p.json)
                    .iter()
                    .any(|it| id_of(it, &res).as_ref() == Some(&o.id))
            })
        });
        let walked: usize = pages.iter().map(|p| items_of(&p.json).len()).sum();
        if own_seen {
            Cell::new(
                Verdict::Blocked,
                format!(
                    "{} page(s), {walked} item(s): B's own row is there, none of A's",
                    pages.len()
                ),
            )
        } else {
            Cell::new(Verdict::Inconclusive, format!("{} page(s), {walked} item(s), but B's own row is not among them: the walk proves nothing", pages.len()))
        }
    }

    /// One id attack judged against its random twin and its control.
    #[allow(clippy::too_many_arguments)] // one place that weighs every part of an id attack
    fn judge(
        &self,
        what: &str,
        attack: &Answer,
        random: &Answer,
        control: Option<&Answer>,
        leak: Option<String>,
        ids: &[String],
        verified: bool,
    ) -> Cell {
        if let Some(e) = leak {
            return Cell::new(Verdict::Leaked, format!("{what}: {e}"));
        }
        if attack.status >= 500 {
            return Cell::new(
                Verdict::ServerError,
                format!(
                    "{what} answered {}: {}",
                    attack.status,
                    excerpt(&attack.text, 200)
                ),
            );
        }
        match control {
            Some(c) if !c.ok() => {
                return Cell::new(Verdict::Inconclusive, format!("{what} answered {}, but the control (the same on B's own object) answered {}: the refusal proves nothing", attack.status, c.status));
            }
            None => {
                return Cell::new(
                    Verdict::Inconclusive,
                    format!(
                    "{what} answered {}, but there is no control (B has no object of its own here)",
                    attack.status
                ),
                )
            }
            _ => {}
        }
        if attack.status != random.status {
            return Cell::new(
                Verdict::Distinguishable,
                format!(
                    "{what} answered {} for A's id and {} for a random id of the same shape",
                    attack.status, random.status
                ),
            );
        }
        if masked_answer(attack, ids) != masked_answer(random, ids) {
            return Cell::new(Verdict::Distinguishable, format!("{what} answered {} for both A's id and a random one, with different bodies: A's: {}; random: {}", attack.status, excerpt(&attack.text, 160), excerpt(&random.text, 160)));
        }
        if attack.ok() {
            return if verified {
                Cell::new(
                    Verdict::Blocked,
                    format!(
                        "{what} answered {} for any id, and A's object is unchanged",
                        attack.status
                    ),
                )
            } else {
                Cell::new(
                    Verdict::Inconclusive,
                    format!(
                        "{what} answered {} for A's id and a random one alike",
                        attack.status
                    ),
                )
            };
        }
        Cell::new(
            Verdict::Blocked,
            format!(
                "{what} answered {} like a random id (control {})",
                attack.status,
                control.map(|c| c.status).unwrap_or(0)
            ),
        )
    }

    async fn filter(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        if res.filter_refs.is_empty() {
            return Cell::new(
                Verdict::NotApplicable,
                "no list parameter refers to another resource",
            );
        }
        if self.a[r].is_empty() {
            return Cell::new(
                Verdict::Inconclusive,
                "A has no row here that a filter could show",
            );
        }
        let Some(path) = self.collection_path(r, Who::B, None) else {
            return Cell::new(
                Verdict::Inconclusive,
                "B has no parent of its own to list under",
            );
        };
        let mut cells = Vec::new();
        for f in &res.filter_refs {
            let (Some(a), Some(b)) = (
                self.a[f.target].first().cloned(),
                self.b[f.target].first().cloned(),
            ) else {
                cells.push(Cell::new(
                    Verdict::Inconclusive,
                    format!(
                        "?{}=: A or B has no {} to filter by",
                        f.field,
                        self.res(f.target).name
                    ),
                ));
                continue;
            };
            let rnd = random_like(&a.id);
            let q = |v: &Value| with_query(&path, &[(f.field.clone(), id_str(v))]);
            let what = format!(
                "GET {}?{}=<A's {} id> as B",
                path,
                f.field,
                self.res(f.target).name
            );
            let attack = match self.walk(Who::B, r, &q(&a.id), &[]).await {
                Ok(p) => p,
                Err(e) => {
                    cells.push(send_err(&e));
                    continue;
                }
            };
            let leak = attack
                .iter()
                .filter(|p| p.ok())
                .find_map(|p| self.a_data(r, p));
            let random = self.send(Who::B, "GET", &q(&rnd), None, &[], None).await;
            let control = self.send(Who::B, "GET", &q(&b.id), None, &[], None).await;
            match (random, control) {
                (Ok(random), Ok(control)) => {
                    let ids = vec![id_str(&a.id), id_str(&rnd)];
                    cells.push(
                        self.judge(
                            &what,
                            &attack[0],
                            &random,
                            Some(&control),
                            leak,
                            &ids,
                            false,
                        )
                        .relax_ok(),
                    );
                }
                (Err(e), _) | (_, Err(e)) => cells.push(send_err(&e)),
            }
        }
        Cell::combine(cells).unwrap_or_else(|| Cell::new(Verdict::NotApplicable, "no filter"))
    }

    async fn search(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        if res.search_params.is_empty() {
            return Cell::new(Verdict::NotApplicable, "no free-text search parameter");
        }
        if self.a[r].is_empty() {
            return Cell::new(Verdict::Inconclusive, "A has no row here to search for");
        }
        let Some(path) = self.collection_path(r, Who::B, None) else {
            return Cell::new(
                Verdict::Inconclusive,
                "B has no parent of its own to list under",
            );
        };
        let mut cells = Vec::new();
        for p in &res.search_params {
            let control = self
                .send(
                    Who::B,
                    "GET",
                    &with_query(&path, &[(p.clone(), self.marker_b.clone())]),
                    None,
                    &[],
                    None,
                )
                .await;
            match control {
                Ok(c) if !c.ok() => {
                    cells.push(Cell::new(
                        Verdict::Inconclusive,
                        format!(
                            "control failed: B's search for its own marker answered {}",
                            c.status
                        ),
                    ));
                    continue;
                }
                Err(e) => {
                    cells.push(send_err(&e));
                    continue;
                }
                _ => {}
            }
            let q = with_query(&path, &[(p.clone(), self.marker_a.clone())]);
            let what = format!("GET {path}?{p}=<A's marker> as B");
            cells.push(self.judge_walk(r, &q, &[], &what).await);
        }
        Cell::combine(cells).unwrap_or_else(|| Cell::new(Verdict::NotApplicable, "no search"))
    }

    async fn get(&mut self, r: usize) -> Cell {
        if self.res(r).get.is_none() {
            return Cell::new(Verdict::NotApplicable, "no read-one operation");
        }
        let Some(a) = self.a[r].first().cloned() else {
            return Cell::new(Verdict::Inconclusive, "A has no row here to read");
        };
        let rnd = random_like(&a.id);
        let (Some(p_attack), Some(p_random)) = (
            self.item_path(r, &a.parents, &a.id),
            self.item_path(r, &a.parents, &rnd),
        ) else {
            return Cell::new(Verdict::Inconclusive, "cannot fill the item path");
        };
        let control_path = self.b[r]
            .first()
            .and_then(|b| self.item_path(r, &b.parents, &b.id));
        let attack = match self.send(Who::B, "GET", &p_attack, None, &[], None).await {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        let random = match self.send(Who::B, "GET", &p_random, None, &[], None).await {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        let control = match control_path {
            Some(p) => match self.send(Who::B, "GET", &p, None, &[], None).await {
                Ok(x) => Some(x),
                Err(e) => return send_err(&e),
            },
            None => None,
        };
        let leak = if attack.ok() {
            self.a_data(r, &attack)
        } else {
            None
        };
        let ids = vec![id_str(&a.id), id_str(&rnd)];
        self.judge(
            &format!("GET {p_attack} as B"),
            &attack,
            &random,
            control.as_ref(),
            leak,
            &ids,
            false,
        )
    }

    async fn nested(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        if res.parents.is_empty() {
            return Cell::new(Verdict::NotApplicable, "not a nested resource");
        }
        let (Some(a), Some(b)) = (self.a[r].first().cloned(), self.b[r].first().cloned()) else {
            return Cell::new(Verdict::Inconclusive, "A or B has no row here");
        };
        let mut cells = Vec::new();
        // B lists under A's parent (vs a random parent; control: B's own parent).
        if res.list.is_some() {
            let rnd_parents: Vec<(String, String)> = a
                .parents
                .iter()
                .map(|(k, v)| (k.clone(), id_str(&random_like(&Value::String(v.clone())))))
                .collect();
            if let (Some(pa), Some(pr), Some(pb)) = (
                fill(&res.collection, &a.parents),
                fill(&res.collection, &rnd_parents),
                fill(&res.collection, &b.parents),
            ) {
                let results = (
                    self.send(Who::B, "GET", &pa, None, &[], None).await,
                    self.send(Who::B, "GET", &pr, None, &[], None).await,
                    self.send(Who::B, "GET", &pb, None, &[], None).await,
                );
                match results {
                    (Ok(at), Ok(rn), Ok(ct)) => {
                        let leak = if at.ok() { self.a_data(r, &at) } else { None };
                        let mut ids: Vec<String> =
                            a.parents.iter().map(|(_, v)| v.clone()).collect();
                        ids.extend(rnd_parents.iter().map(|(_, v)| v.clone()));
                        cells.push(
                            self.judge(
                                &format!("GET {pa} (A's parent) as B"),
                                &at,
                                &rn,
                                Some(&ct),
                                leak,
                                &ids,
                                false,
                            )
                            .relax_ok(),
                        );
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => cells.push(send_err(&e)),
                }
            }
        }
        // A's child id under B's own parent.
        if res.get.is_some() {
            let rnd = random_like(&a.id);
            if let (Some(pa), Some(pr), Some(pb)) = (
                self.item_path(r, &b.parents, &a.id),
                self.item_path(r, &b.parents, &rnd),
                self.item_path(r, &b.parents, &b.id),
            ) {
                let results = (
                    self.send(Who::B, "GET", &pa, None, &[], None).await,
                    self.send(Who::B, "GET", &pr, None, &[], None).await,
                    self.send(Who::B, "GET", &pb, None, &[], None).await,
                );
                match results {
                    (Ok(at), Ok(rn), Ok(ct)) => {
                        let leak = if at.ok() { self.a_data(r, &at) } else { None };
                        let ids = vec![id_str(&a.id), id_str(&rnd)];
                        cells.push(self.judge(
                            &format!("GET {pa} (A's child under B's parent) as B"),
                            &at,
                            &rn,
                            Some(&ct),
                            leak,
                            &ids,
                            false,
                        ));
                    }
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => cells.push(send_err(&e)),
                }
            }
        }
        Cell::combine(cells).unwrap_or_else(|| Cell::new(Verdict::NotApplicable, "no nested read"))
    }

    async fn cursor(&mut self, r: usize) -> Cell {
        let Some(list) = self.res(r).list.clone() else {
            return Cell::new(Verdict::NotApplicable, "no list operation");
        };
        let Some(size) = page_size_param(&list) else {
            return Cell::new(
                Verdict::NotApplicable,
                "the list has no page-size parameter to page with",
            );
        };
        if cursor_param(&list).is_none() && page_param(&list).is_some() {
            return Cell::new(Verdict::NotApplicable, "pages are numbered, not cursors");
        }
        if self.a[r].len() < 2 {
            return Cell::new(
                Verdict::Inconclusive,
                "A has fewer than two rows here: no cursor to take",
            );
        }
        let Some(pa) = self.collection_path(r, Who::A, None) else {
            return Cell::new(Verdict::Inconclusive, "cannot fill the collection path");
        };
        let first = match self
            .send(
                Who::A,
                "GET",
                &with_query(&pa, &[(size.clone(), "1".into())]),
                None,
                &[],
                None,
            )
            .await
        {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        let next = match next_of(&first) {
            Some(Next::Url(u)) => u,
            Some(Next::Token(t)) => match cursor_param(&list) {
                Some(c) => {
                    let Some(pb) = self.collection_path(r, Who::B, None) else {
                        return Cell::new(
                            Verdict::Inconclusive,
                            "B has no parent of its own to list under",
                        );
                    };
                    with_query(&pb, &[(size.clone(), "1".into()), (c, t)])
                }
                None => {
                    return Cell::new(
                        Verdict::NotApplicable,
                        "a cursor, but no documented parameter to pass it in",
                    )
                }
            },
            None => {
                return Cell::new(
                    Verdict::Inconclusive,
                    format!(
                        "A's first page of one row (answered {}) gave no cursor or next link",
                        first.status
                    ),
                )
            }
        };
        let ans = match self.send(Who::B, "GET", &next, None, &[], None).await {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        if let Some(e) = ans.ok().then(|| self.a_data(r, &ans)).flatten() {
            return Cell::new(Verdict::Leaked, format!("GET with A's cursor as B: {e}"));
        }
        if ans.status >= 500 {
            return Cell::new(
                Verdict::ServerError,
                format!("GET with A's cursor as B answered {}", ans.status),
            );
        }
        Cell::new(
            Verdict::Blocked,
            format!(
                "GET with A's cursor as B answered {} without A's rows",
                ans.status
            ),
        )
    }

    /// A tenant id as the API writes it (a number where its rows show numbers).
    fn tenant_value(&self, tid: &str) -> Value {
        match tid.parse::<i64>() {
            Ok(n) if self.tenant_numeric => Value::from(n),
            _ => Value::String(tid.to_string()),
        }
    }

    /// The tenant field names to smuggle: those the body declares, those A's rows show
    /// (`tenantId` in a representation), and `tenant_id`.
    fn tenant_names(&self, r: usize) -> Vec<String> {
        let mut names = self.res(r).tenant_fields.clone();
        for o in &self.a[r] {
            if let Some(obj) = unwrap_one(&o.repr).as_object() {
                for k in obj.keys() {
                    if is_tenant_field(k) && !names.contains(k) {
                        names.push(k.clone());
                    }
                }
            }
        }
        if names.is_empty() {
            names.push("tenant_id".into());
        }
        names
    }

    async fn tenant_query(&mut self, r: usize) -> Cell {
        if self.res(r).list.is_none() && self.res(r).get.is_none() {
            return Cell::new(Verdict::NotApplicable, "no read operation");
        }
        let Some(tid) = self.tenant_a_id.clone() else {
            return Cell::new(
                Verdict::Inconclusive,
                "A's tenant id is unknown (no response carries it): give --tenant-a-id",
            );
        };
        if self.a[r].is_empty() {
            return Cell::new(Verdict::Inconclusive, "A has no row here to look for");
        }
        let names = self.tenant_names(r);
        let q: Vec<(String, String)> = names.iter().map(|n| (n.clone(), tid.clone())).collect();
        let mut cells = Vec::new();
        if self.res(r).list.is_some() {
            if let Some(p) = self.collection_path(r, Who::B, None) {
                let what = format!("GET {} as B", with_query(&p, &q));
                cells.push(self.judge_walk(r, &with_query(&p, &q), &[], &what).await);
            }
        }
        if self.res(r).get.is_some() {
            if let Some(a) = self.a[r].first().cloned() {
                if let Some(p) = self.item_path(r, &a.parents, &a.id) {
                    let path = with_query(&p, &q);
                    cells.push(self.read_one_for_leak(r, &path, &[]).await);
                }
            }
        }
        Cell::combine(cells).unwrap_or_else(|| Cell::new(Verdict::Inconclusive, "nothing to send"))
    }

    async fn read_one_for_leak(
        &mut self,
        r: usize,
        path: &str,
        extra: &[(String, String)],
    ) -> Cell {
        match self.send(Who::B, "GET", path, None, extra, None).await {
            Ok(a) => {
                if let Some(e) = a.ok().then(|| self.a_data(r, &a)).flatten() {
                    Cell::new(Verdict::Leaked, format!("GET {path} as B: {e}"))
                } else if a.status >= 500 {
                    Cell::new(
                        Verdict::ServerError,
                        format!("GET {path} as B answered {}", a.status),
                    )
                } else {
                    Cell::new(
                        Verdict::Blocked,
                        format!("GET {path} as B answered {} without A's data", a.status),
                    )
                }
            }
            Err(e) => send_err(&e),
        }
    }

    async fn tenant_header(&mut self, r: usize) -> Cell {
        if self.res(r).list.is_none() && self.res(r).get.is_none() {
            return Cell::new(Verdict::NotApplicable, "no read operation");
        }
        let Some(tid) = self.tenant_a_id.clone() else {
            return Cell::new(
                Verdict::Inconclusive,
                "A's tenant id is unknown (no response carries it): give --tenant-a-id",
            );
        };
        if self.a[r].is_empty() {
            return Cell::new(Verdict::Inconclusive, "A has no row here to look for");
        }
        let headers: Vec<(String, String)> = TENANT_HEADERS
            .iter()
            .map(|h| (h.to_string(), tid.clone()))
            .collect();
        let mut cells = Vec::new();
        if self.res(r).list.is_some() {
            if let Some(p) = self.collection_path(r, Who::B, None) {
                let what =
                    format!("GET {p} as B with X-Tenant-Id (and 5 similar headers) = A's tenant");
                cells.push(self.judge_walk(r, &p, &headers, &what).await);
            }
        }
        if self.res(r).get.is_some() {
            if let Some(a) = self.a[r].first().cloned() {
                if let Some(p) = self.item_path(r, &a.parents, &a.id) {
                    cells.push(self.read_one_for_leak(r, &p, &headers).await);
                }
            }
        }
        Cell::combine(cells).unwrap_or_else(|| Cell::new(Verdict::Inconclusive, "nothing to send"))
    }

    // ---- write attacks -----------------------------------------------------------

    fn writes_refused(&self) -> Option<Cell> {
        (!self.client.writes_allowed()).then(|| {
            Cell::new(
                Verdict::Inconclusive,
                "writes refused: the host is not loopback and --allow-writes was not given",
            )
        })
    }

    async fn write_attacks(&mut self, r: usize) {
        if self.refused[r].is_some() {
            return;
        }
        let cell = self.create_ref(r).await;
        self.set(r, Attack::CreateRef, cell);
        let cell = self.patch_ref(r).await;
        self.set(r, Attack::PatchRef, cell);
        let cell = self.tenant_body(r).await;
        self.set(r, Attack::TenantBody, cell);
        let cell = self.patch(r, false).await;
        self.set(r, Attack::Patch, cell);
        let cell = self.patch(r, true).await;
        self.set(r, Attack::Put, cell);
    }

    /// Creates as B at `path` with `body`; a created row is remembered for clean-up.
    async fn post_b(
        &mut self,
        r: usize,
        path: &str,
        parents: &[(String, String)],
        body: &Value,
    ) -> Result<(Answer, Option<Value>), SendError> {
        let op = self.res(r).create.clone();
        let ans = self
            .send(Who::B, "POST", path, Some(body), &[], op.as_ref())
            .await?;
        let mut id = None;
        if ans.ok() {
            let res = self.res(r).clone();
            id = id_of(&ans.json, &res);
            if let Some(i) = &id {
                if let Some(item) = self.item_path(r, parents, i) {
                    self.created.push((Who::B, item));
                }
            }
        }
        Ok((ans, id))
    }

    async fn create_ref(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        if res.create.is_none() || (res.body_refs.is_empty() && res.parents.is_empty()) {
            return Cell::new(
                Verdict::NotApplicable,
                "no create with a reference or a parent",
            );
        }
        if let Some(c) = self.writes_refused() {
            return c;
        }
        if self.b[r].is_empty() {
            return Cell::new(
                Verdict::Inconclusive,
                "B could not create a row here itself: no control",
            );
        }
        let schema = res
            .create
            .as_ref()
            .and_then(|o| o.body.clone())
            .unwrap_or(Value::Object(Map::new()));
        let props: BTreeMap<String, Value> = properties_of(&schema).into_iter().collect();
        let Some(b_path) = self.collection_path(r, Who::B, None) else {
            return Cell::new(Verdict::Inconclusive, "B has no parent of its own");
        };
        let b_parents = self.b[r][0].parents.clone();
        let mut cells = Vec::new();
        for f in &res.body_refs {
            let (Some(a), Some(b)) = (
                self.a[f.target].first().cloned(),
                self.b[f.target].first().cloned(),
            ) else {
                cells.push(Cell::new(
                    Verdict::Inconclusive,
                    format!(
                        "{}: A or B has no {} to refer to",
                        f.field,
                        self.res(f.target).name
                    ),
                ));
                continue;
            };
            let rnd = random_like(&a.id);
            let mk = |v: &Value| {
                let mut m = Map::new();
                m.insert(f.field.clone(), as_field_value(props.get(&f.field), v));
                m
            };
            let what = format!(
                "POST {b_path} as B with {} = A's {} id",
                f.field,
                self.res(f.target).name
            );
            // The control first: B's own reference in B's working body (with the other
            // optional references, or without them), so the attack uses a body that works.
            let mut chosen: Option<(Option<String>, Answer)> = None;
            let mut failed = None;
            for only in [None, Some(f.field.clone())] {
                let Some(body_c) = self.create_body_only(Who::B, r, &mk(&b.id), only.as_deref())
                else {
                    continue;
                };
                match self.post_b(r, &b_path, &b_parents, &body_c).await {
                    Ok((ct, _)) if ct.ok() => {
                        chosen = Some((only, ct));
                        break;
                    }
                    Ok((ct, _)) => failed = Some(ct),
                    Err(e) => {
                        failed = None;
                        cells.push(send_err(&e));
                        break;
                    }
                }
            }
            let Some((only, ct)) = chosen else {
                if let Some(ct) = failed {
                    cells.push(Cell::new(Verdict::Inconclusive, format!("{what}: the control (B's own {} id) answered {}: the refusal proves nothing", self.res(f.target).name, ct.status)));
                }
                continue;
            };
            let Some(body_a) = self.create_body_only(Who::B, r, &mk(&a.id), only.as_deref()) else {
                continue;
            };
            let Some(body_r) = self.create_body_only(Who::B, r, &mk(&rnd), only.as_deref()) else {
                continue;
            };
            let attack = self.post_b(r, &b_path, &b_parents, &body_a).await;
            let random = self.post_b(r, &b_path, &b_parents, &body_r).await;
            match (attack, random) {
                (Ok((at, at_id)), Ok((rn, _))) => {
                    let leak = at
                        .ok()
                        .then(|| {
                            let echoed = unwrap_one(&at.json).get(&f.field).cloned();
                            match echoed {
                                Some(v) if id_str(&v) != id_str(&a.id) => None,
                                _ => Some(format!(
                                    "answered {} and created {} referring to A's row",
                                    at.status,
                                    at_id.as_ref().map(id_str).unwrap_or_default()
                                )),
                            }
                        })
                        .flatten();
                    let ids = vec![id_str(&a.id), id_str(&rnd)];
                    cells.push(self.judge(&what, &at, &rn, Some(&ct), leak, &ids, true));
                }
                (Err(e), _) | (_, Err(e)) => cells.push(send_err(&e)),
            }
        }
        // A child under A's parent, through the path.
        if !res.parents.is_empty() {
            if let Some(a) = self.a[r].first().cloned() {
                let rnd_parents: Vec<(String, String)> = a
                    .parents
                    .iter()
                    .map(|(k, v)| (k.clone(), id_str(&random_like(&Value::String(v.clone())))))
                    .collect();
                if let (Some(pa), Some(pr)) = (
                    fill(&res.collection, &a.parents),
                    fill(&res.collection, &rnd_parents),
                ) {
                    let what = format!("POST {pa} (under A's parent) as B");
                    let body = self.create_body(Who::B, r, &Map::new());
                    let body_c = self.create_body(Who::B, r, &Map::new());
                    if let (Some(body), Some(body_c)) = (body, body_c) {
                        let attack = self.post_b(r, &pa, &a.parents, &body).await;
                        let random = self.post_b(r, &pr, &rnd_parents, &body).await;
                        let control = self.post_b(r, &b_path, &b_parents, &body_c).await;
                        match (attack, random, control) {
                            (Ok((at, at_id)), Ok((rn, _)), Ok((ct, _))) => {
                                let leak = at.ok().then(|| {
                                    format!(
                                        "answered {} and created {} under A's parent",
                                        at.status,
                                        at_id.as_ref().map(id_str).unwrap_or_default()
                                    )
                                });
                                if at.ok() {
                                    // Also clean up with A's credential (the row may be A's now).
                                    if let Some(i) = &at_id {
                                        if let Some(item) = self.item_path(r, &a.parents, i) {
                                            self.created.push((Who::A, item));
                                        }
                                    }
                                }
                                let mut ids: Vec<String> =
                                    a.parents.iter().map(|(_, v)| v.clone()).collect();
                                ids.extend(rnd_parents.iter().map(|(_, v)| v.clone()));
                                cells.push(self.judge(
                                    &what,
                                    &at,
                                    &rn,
                                    Some(&ct),
                                    leak,
                                    &ids,
                                    true,
                                ));
                            }
                            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                                cells.push(send_err(&e))
                            }
                        }
                    }
                }
            }
        }
        Cell::combine(cells)
            .unwrap_or_else(|| Cell::new(Verdict::NotApplicable, "nothing to refer to"))
    }

    async fn patch_ref(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        let Some(op) = res.patch.clone() else {
            return Cell::new(Verdict::NotApplicable, "no PATCH");
        };
        if res.patch_refs.is_empty() {
            return Cell::new(
                Verdict::NotApplicable,
                "the PATCH body refers to no other resource",
            );
        }
        if let Some(c) = self.writes_refused() {
            return c;
        }
        let Some(b) = self.b[r].iter().find(|o| o.created).cloned() else {
            return Cell::new(Verdict::Inconclusive, "B created no row here to re-point");
        };
        let Some(path) = self.item_path(r, &b.parents, &b.id) else {
            return Cell::new(Verdict::Inconclusive, "cannot fill the item path");
        };
        let props: BTreeMap<String, Value> = op
            .body
            .as_ref()
            .map(properties_of)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let mut cells = Vec::new();
        for f in &res.patch_refs {
            let (Some(a_t), Some(b_t)) = (
                self.a[f.target].first().cloned(),
                self.b[f.target].first().cloned(),
            ) else {
                cells.push(Cell::new(
                    Verdict::Inconclusive,
                    format!(
                        "{}: A or B has no {} to refer to",
                        f.field,
                        self.res(f.target).name
                    ),
                ));
                continue;
            };
            let rnd = random_like(&a_t.id);
            let body = |v: &Value| {
                let mut m = Map::new();
                m.insert(f.field.clone(), as_field_value(props.get(&f.field), v));
                Value::Object(m)
            };
            let what = format!(
                "PATCH {path} as B with {} = A's {} id",
                f.field,
                self.res(f.target).name
            );
            let attack = self
                .send(Who::B, "PATCH", &path, Some(&body(&a_t.id)), &[], Some(&op))
                .await;
            let after = self.send(Who::B, "GET", &path, None, &[], None).await;
            let random = self
                .send(Who::B, "PATCH", &path, Some(&body(&rnd)), &[], Some(&op))
                .await;
            let control = self
                .send(Who::B, "PATCH", &path, Some(&body(&b_t.id)), &[], Some(&op))
                .await;
            match (attack, random, control) {
                (Ok(at), Ok(rn), Ok(ct)) => {
                    let now = after
                        .ok()
                        .filter(Answer::ok)
                        .and_then(|g| unwrap_one(&g.json).get(&f.field).cloned());
                    let leak =
                        (at.ok() && now.as_ref().map(id_str) == Some(id_str(&a_t.id))).then(|| {
                            format!(
                                "answered {} and B's row now refers to A's row {}",
                                at.status,
                                id_str(&a_t.id)
                            )
                        });
                    let ids = vec![id_str(&a_t.id), id_str(&rnd)];
                    cells.push(self.judge(&what, &at, &rn, Some(&ct), leak, &ids, true));
                }
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => cells.push(send_err(&e)),
            }
        }
        Cell::combine(cells)
            .unwrap_or_else(|| Cell::new(Verdict::NotApplicable, "nothing to re-point"))
    }

    async fn tenant_body(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        if res.create.is_none() {
            return Cell::new(Verdict::NotApplicable, "no create");
        }
        if let Some(c) = self.writes_refused() {
            return c;
        }
        let Some(tid) = self.tenant_a_id.clone() else {
            return Cell::new(
                Verdict::Inconclusive,
                "A's tenant id is unknown (no response carries it): give --tenant-a-id",
            );
        };
        if self.b[r].is_empty() {
            return Cell::new(
                Verdict::Inconclusive,
                "B could not create a row here itself: no control",
            );
        }
        let Some(path) = self.collection_path(r, Who::B, None) else {
            return Cell::new(Verdict::Inconclusive, "B has no parent of its own");
        };
        let b_parents = self.b[r][0].parents.clone();
        let mut over = Map::new();
        let value = self.tenant_value(&tid);
        for n in self.tenant_names(r) {
            over.insert(n, value.clone());
        }
        let Some(body) = self.create_body(Who::B, r, &over) else {
            return Cell::new(Verdict::NotApplicable, "no create body");
        };
        let what = format!(
            "POST {path} as B with {} = A's tenant id",
            over.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        let (ans, id) = match self.post_b(r, &path, &b_parents, &body).await {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        if ans.status >= 500 {
            return Cell::new(
                Verdict::ServerError,
                format!("{what} answered {}", ans.status),
            );
        }
        if !ans.ok() {
            return Cell::new(
                Verdict::Blocked,
                format!(
                    "{what} answered {} (the same body without it: accepted)",
                    ans.status
                ),
            );
        }
        let Some(id) = id else {
            return Cell::new(
                Verdict::Inconclusive,
                format!("{what} answered {} without an id to follow", ans.status),
            );
        };
        let echoed_a = unwrap_one(&ans.json).as_object().is_some_and(|o| {
            o.iter()
                .any(|(k, v)| is_tenant_field(k) && id_str(v) == tid)
        });
        let Some(item) = self.item_path(r, &b_parents, &id) else {
            return Cell::new(Verdict::Inconclusive, "cannot fill the item path");
        };
        self.created.push((Who::A, item.clone()));
        if echoed_a {
            return Cell::new(
                Verdict::Leaked,
                format!(
                    "{what} answered {} and the row carries A's tenant id",
                    ans.status
                ),
            );
        }
        if res.get.is_none() {
            return Cell::new(
                Verdict::Inconclusive,
                format!(
                    "{what} answered {}; no read-one operation to see where the row went",
                    ans.status
                ),
            );
        }
        let by_a = self.send(Who::A, "GET", &item, None, &[], None).await;
        let by_b = self.send(Who::B, "GET", &item, None, &[], None).await;
        match (by_a, by_b) {
            (Ok(a), _) if a.ok() => Cell::new(Verdict::Leaked, format!("{what} answered {} and tenant A can read the row {}: it was created in A's tenant", ans.status, id_str(&id))),
            (Ok(_), Ok(b)) if b.ok() => Cell::new(Verdict::Blocked, format!("{what} answered {}, but the field was ignored: the row is B's", ans.status)),
            (Ok(a), Ok(b)) => Cell::new(Verdict::Inconclusive, format!("{what} answered {}, but neither A ({}) nor B ({}) can read the row", ans.status, a.status, b.status)),
            (Err(e), _) | (_, Err(e)) => send_err(&e),
        }
    }

    /// The field a PATCH changes and the value B writes (`put`: a whole body).
    fn patch_value(
        &mut self,
        r: usize,
        op: &Operation,
        put: bool,
        who_refs: Who,
    ) -> Option<(Value, Vec<String>)> {
        let schema = op.body.clone()?;
        let res = self.res(r).clone();
        let refs: Vec<String> = res
            .body_refs
            .iter()
            .chain(res.patch_refs.iter())
            .map(|f| f.field.clone())
            .collect();
        let marker = self.marker_b.clone();
        if put {
            // A whole body with B's references and B's markers.
            let mut fixed = Map::new();
            let props: BTreeMap<String, Value> = properties_of(&schema).into_iter().collect();
            for f in res.body_refs.iter().chain(res.patch_refs.iter()) {
                if let Some(o) = self.objs(who_refs, f.target).first() {
                    fixed.insert(f.field.clone(), as_field_value(props.get(&f.field), &o.id));
                }
            }
            let shape = self.shapes[r].clone().unwrap_or_default();
            let mut g = Gen {
                marker: &marker,
                seq: &mut self.seq,
            };
            let body = g.object(&schema, &shape, &fixed, false);
            let strings: Vec<String> = body
                .as_object()
                .map(|o| {
                    o.values()
                        .filter_map(|v| v.as_str())
                        .filter(|s| s.contains(&marker))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            return Some((body, strings));
        }
        let props = properties_of(&schema);
        // A pattern that a marked free-text value satisfies (`^[^\u0000]*$`, say) keeps a
        // field plain: it restricts characters, not the kind of value.
        let free_text =
            |p: &str| regex::Regex::new(p).is_ok_and(|re| re.is_match(&format!("{marker} name 1")));
        let plain = |s: &Value| {
            type_of(s) == Some("string")
                && s.get("enum").is_none()
                && s.get("format").is_none()
                && s.get("pattern")
                    .and_then(Value::as_str)
                    .is_none_or(free_text)
        };
        let prefer = [
            "name",
            "title",
            "description",
            "body",
            "label",
            "summary",
            "note",
            "notes",
            "comment",
            "text",
            "content",
            "displayname",
        ];
        let candidates: Vec<&(String, Value)> = props
            .iter()
            .filter(|(n, s)| {
                !spec::is_read_only(s)
                    && !refs.contains(n)
                    && !is_tenant_field(n)
                    && norm(n) != "id"
            })
            .collect();
        let pick = candidates
            .iter()
            .find(|(n, s)| plain(s) && prefer.contains(&norm(n).as_str()))
            .or_else(|| {
                candidates.iter().find(|(n, s)| {
                    plain(s)
                        && !["currency", "country", "status", "state", "locale"]
                            .iter()
                            .any(|x| norm(n).contains(x))
                })
            })
            .or_else(|| {
                candidates
                    .iter()
                    .find(|(_, s)| type_of(s) == Some("string"))
            })
            .or_else(|| candidates.first())?;
        let (name, s) = (pick.0.clone(), pick.1.clone());
        let mut g = Gen {
            marker: &marker,
            seq: &mut self.seq,
        };
        let v = g.value(&s, &name);
        let mut m = Map::new();
        m.insert(name, v.clone());
        let strings = v.as_str().map(|s| vec![s.to_string()]).unwrap_or_default();
        Some((Value::Object(m), strings))
    }

    /// `patch` or `put` on A's first item, with A's re-read.
    async fn patch(&mut self, r: usize, put: bool) -> Cell {
        let res = self.res(r).clone();
        let (op, method) = match (put, &res.patch, &res.put) {
            (false, Some(op), _) => (op.clone(), "PATCH"),
            (true, _, Some(op)) => (op.clone(), "PUT"),
            _ => {
                return Cell::new(
                    Verdict::NotApplicable,
                    if put { "no PUT" } else { "no PATCH" },
                )
            }
        };
        if let Some(c) = self.writes_refused() {
            return c;
        }
        let Some(a) = self.a[r].iter().find(|o| o.created).cloned() else {
            return Cell::new(
                Verdict::Inconclusive,
                "A created no row here to attack (rows taken from a list are never written)",
            );
        };
        let b = self.b[r].iter().find(|o| o.created).cloned();
        let Some((body, strings)) = self.patch_value(r, &op, put, Who::B) else {
            return Cell::new(
                Verdict::Inconclusive,
                "no field to change could be generated",
            );
        };
        let Some((body_c, _)) = self.patch_value(r, &op, put, Who::B) else {
            return Cell::new(
                Verdict::Inconclusive,
                "no field to change could be generated",
            );
        };
        let rnd = random_like(&a.id);
        let (Some(pa), Some(pr)) = (
            self.item_path(r, &a.parents, &a.id),
            self.item_path(r, &a.parents, &rnd),
        ) else {
            return Cell::new(Verdict::Inconclusive, "cannot fill the item path");
        };
        let what = format!("{method} {pa} as B");
        let attack = match self
            .send(Who::B, method, &pa, Some(&body), &[], Some(&op))
            .await
        {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        // A re-reads at once: a write answered 404 but applied is a leak.
        let reread = self.send(Who::A, "GET", &pa, None, &[], None).await;
        let random = match self
            .send(Who::B, method, &pr, Some(&body), &[], Some(&op))
            .await
        {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        let control = match &b {
            Some(b) => match self.item_path(r, &b.parents, &b.id) {
                Some(pb) => match self
                    .send(Who::B, method, &pb, Some(&body_c), &[], Some(&op))
                    .await
                {
                    Ok(x) => Some(x),
                    Err(e) => return send_err(&e),
                },
                None => None,
            },
            None => None,
        };
        let mut leak = None;
        let mut verified = false;
        if res.get.is_some() {
            match &reread {
                Ok(g) if g.ok() => {
                    if let Some(s) = strings.iter().find(|s| g.text.contains(s.as_str())) {
                        leak = Some(format!(
                            "answered {}, but A's row now holds B's value {s:?}",
                            attack.status
                        ));
                    } else if !put {
                        let (k, v) = body
                            .as_object()
                            .and_then(|o| o.iter().next())
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .unwrap_or_default();
                        if !v.is_string()
                            && unwrap_one(&g.json).get(&k) == Some(&v)
                            && a.repr.get(&k) != Some(&v)
                        {
                            leak = Some(format!(
                                "answered {}, but A's row now has {k} = {v}",
                                attack.status
                            ));
                        }
                    }
                    verified = leak.is_none();
                }
                Ok(g) => {
                    if g.status == 404 || g.status == 410 {
                        leak = Some(format!(
                            "answered {}, and A's row is gone ({} to A)",
                            attack.status, g.status
                        ));
                    }
                }
                Err(_) => {}
            }
        } else if attack.ok() {
            leak = Some(format!(
                "answered {} to B's {method} of A's row",
                attack.status
            ));
        }
        let ids = vec![id_str(&a.id), id_str(&rnd)];
        let mut cell = self.judge(
            &what,
            &attack,
            &random,
            control.as_ref(),
            leak,
            &ids,
            verified,
        );
        if cell.verdict == Verdict::Blocked && res.get.is_none() {
            cell.evidence
                .push_str(" (no read-one operation: A could not re-read)");
        }
        cell
    }

    async fn unique(&mut self, r: usize) {
        if self.refused[r].is_some() {
            return;
        }
        let cell = self.unique_cell(r).await;
        self.set(r, Attack::Unique, cell);
    }

    async fn unique_cell(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        let Some(op) = res.create.clone() else {
            return Cell::new(Verdict::NotApplicable, "no create");
        };
        if let Some(c) = self.writes_refused() {
            return c;
        }
        let Some(a) = self.a[r].iter().find(|o| o.created).cloned() else {
            return Cell::new(
                Verdict::Inconclusive,
                "A created no row here whose values B could reuse",
            );
        };
        let refs: Vec<String> = res.body_refs.iter().map(|f| f.field.clone()).collect();
        let schema = op.body.clone().unwrap_or(Value::Object(Map::new()));
        let props: BTreeMap<String, Value> = properties_of(&schema).into_iter().collect();
        let copied: Map<String, Value> = a
            .body
            .iter()
            .filter(|(k, v)| {
                v.is_string()
                    && !refs.contains(k)
                    && !is_tenant_field(k)
                    && props.get(*k).is_some_and(|s| s.get("enum").is_none())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if copied.is_empty() {
            return Cell::new(
                Verdict::NotApplicable,
                "no free-form string value of A's to reuse",
            );
        }
        let Some(path) = self.collection_path(r, Who::B, None) else {
            return Cell::new(Verdict::Inconclusive, "B has no parent of its own");
        };
        let parents = self.b[r]
            .first()
            .map(|o| o.parents.clone())
            .unwrap_or_default();
        let Some(body) = self.create_body(Who::B, r, &copied) else {
            return Cell::new(Verdict::NotApplicable, "no create body");
        };
        let fields = copied.keys().cloned().collect::<Vec<_>>().join(", ");
        let what = format!("POST {path} as B with A's values of {fields}");
        let (at, _) = match self.post_b(r, &path, &parents, &body).await {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        if at.status >= 500 {
            return Cell::new(
                Verdict::ServerError,
                format!("{what} answered {}", at.status),
            );
        }
        if at.ok() {
            return Cell::new(
                Verdict::Blocked,
                format!(
                    "{what} answered {}: A's values are not unique across tenants",
                    at.status
                ),
            );
        }
        let Some(fresh) = self.create_body(Who::B, r, &Map::new()) else {
            return Cell::new(Verdict::NotApplicable, "no create body");
        };
        match self.post_b(r, &path, &parents, &fresh).await {
            Ok((f, _)) if f.ok() => Cell::new(Verdict::Distinguishable, format!("{what} answered {} ({}), a fresh value {}: B learns which values exist in another tenant", at.status, excerpt(&at.text, 120), f.status)),
            Ok((f, _)) => Cell::new(Verdict::Inconclusive, format!("{what} answered {}, and a fresh value answered {} too", at.status, f.status)),
            Err(e) => send_err(&e),
        }
    }

    async fn reread(&mut self, r: usize) {
        if self.refused[r].is_some() {
            return;
        }
        let cell = self.reread_cell(r).await;
        self.set(r, Attack::Reread, cell);
    }

    async fn reread_cell(&mut self, r: usize) -> Cell {
        if self.res(r).get.is_none() {
            return Cell::new(
                Verdict::NotApplicable,
                "no read-one operation to re-read with",
            );
        }
        let objs: Vec<Obj> = self.a[r].iter().filter(|o| o.created).cloned().collect();
        if objs.is_empty() {
            return Cell::new(Verdict::NotApplicable, "A created nothing here");
        }
        let already = self.cells[r].values().any(|c| c.verdict == Verdict::Leaked);
        let mut changed = Vec::new();
        for o in &objs {
            let Some(p) = self.item_path(r, &o.parents, &o.id) else {
                continue;
            };
            match self.send(Who::A, "GET", &p, None, &[], None).await {
                Ok(g) if g.ok() => {
                    let ids = vec![id_str(&o.id)];
                    if mask(unwrap_one(&g.json), &ids) != mask(&o.repr, &ids) {
                        changed.push(format!("{p} changed: now {}", excerpt(&g.text, 160)));
                    }
                }
                Ok(g) => changed.push(format!("{p} answered {} to A", g.status)),
                Err(e) => return send_err(&e),
            }
        }
        if changed.is_empty() {
            Cell::new(
                Verdict::Blocked,
                format!("A re-read its {} row(s): unchanged", objs.len()),
            )
        } else if already {
            Cell::new(
                Verdict::Leaked,
                format!("after the leaks above: {}", changed.join("; ")),
            )
        } else {
            Cell::new(Verdict::Leaked, changed.join("; "))
        }
    }

    async fn delete(&mut self, r: usize) {
        if self.refused[r].is_some() {
            return;
        }
        let cell = self.delete_cell(r).await;
        self.set(r, Attack::Delete, cell);
    }

    async fn delete_cell(&mut self, r: usize) -> Cell {
        let res = self.res(r).clone();
        if res.delete.is_none() {
            return Cell::new(Verdict::NotApplicable, "no DELETE");
        }
        if let Some(c) = self.writes_refused() {
            return c;
        }
        let Some(a) = self.a[r].iter().find(|o| o.created).cloned() else {
            return Cell::new(
                Verdict::Inconclusive,
                "A created no row here to attack (rows taken from a list are never deleted)",
            );
        };
        let rnd = random_like(&a.id);
        let (Some(pa), Some(pr)) = (
            self.item_path(r, &a.parents, &a.id),
            self.item_path(r, &a.parents, &rnd),
        ) else {
            return Cell::new(Verdict::Inconclusive, "cannot fill the item path");
        };
        let what = format!("DELETE {pa} as B");
        let before = if res.get.is_some() {
            self.send(Who::A, "GET", &pa, None, &[], None)
                .await
                .ok()
                .filter(Answer::ok)
        } else {
            None
        };
        let attack = match self
            .send(Who::B, "DELETE", &pa, None, &[], res.delete.as_ref())
            .await
        {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        let after = if res.get.is_some() {
            self.send(Who::A, "GET", &pa, None, &[], None).await.ok()
        } else {
            None
        };
        let random = match self
            .send(Who::B, "DELETE", &pr, None, &[], res.delete.as_ref())
            .await
        {
            Ok(x) => x,
            Err(e) => return send_err(&e),
        };
        // Control: B deletes a row of its own, made for it.
        let control = match self.create(Who::B, r).await {
            Ok(Some(o)) => match self.item_path(r, &o.parents, &o.id) {
                Some(p) => self
                    .send(Who::B, "DELETE", &p, None, &[], res.delete.as_ref())
                    .await
                    .ok(),
                None => None,
            },
            _ => None,
        };
        let mut leak = None;
        let mut verified = false;
        match (&before, &after) {
            (Some(b), Some(g)) if g.ok() => {
                let ids = vec![id_str(&a.id)];
                if mask(unwrap_one(&g.json), &ids) != mask(unwrap_one(&b.json), &ids) {
                    leak = Some(format!(
                        "answered {}, and A's row changed: {}",
                        attack.status,
                        excerpt(&g.text, 160)
                    ));
                } else {
                    verified = true;
                }
            }
            (Some(_), Some(g)) if g.status == 404 || g.status == 410 => {
                leak = Some(format!(
                    "answered {}, and A's row is gone ({} to A)",
                    attack.status, g.status
                ));
            }
            (None, _) if attack.ok() && res.get.is_none() => {
                leak = Some(format!(
                    "answered {} to B's DELETE of A's row",
                    attack.status
                ));
            }
            _ => {}
        }
        let ids = vec![id_str(&a.id), id_str(&rnd)];
        self.judge(
            &what,
            &attack,
            &random,
            control.as_ref(),
            leak,
            &ids,
            verified,
        )
    }

    async fn cleanup(&mut self) {
        if !self.client.writes_allowed() {
            return;
        }
        let created = std::mem::take(&mut self.created);
        let mut left = Vec::new();
        // Children were created after their parents: delete in reverse.
        for (who, path) in created.iter().rev() {
            let r = self
                .spec
                .resources
                .iter()
                .position(|res| res.item.as_deref().is_some_and(|t| same_shape(t, path)));
            let op = r.and_then(|r| self.res(r).delete.clone());
            if op.is_none() {
                left.push(format!("{path} (no DELETE)"));
                continue;
            }
            match self
                .send(*who, "DELETE", path, None, &[], op.as_ref())
                .await
            {
                Ok(a) if a.ok() || a.status == 404 || a.status == 410 => {}
                Ok(a) => left.push(format!("{path} ({})", a.status)),
                Err(e) => left.push(format!("{path} ({e})")),
            }
        }
        if !left.is_empty() {
            self.notes.push(format!(
                "clean-up could not delete {} row(s): {}",
                left.len(),
                left.join(", ")
            ));
        }
    }
}

/// Field errors of a 400/422 body: RFC 9457 `errors: [{field|name|pointer, message|detail}]`,
/// FastAPI's `detail: [{loc, msg}]`, or `errors: {field: [messages]}`.
fn field_errors(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let list = v
        .get("errors")
        .or_else(|| v.get("detail"))
        .or_else(|| v.get("invalid_params"));
    match list {
        Some(Value::Array(a)) => {
            for e in a {
                let field = ["field", "name", "param", "property", "path", "pointer"]
                    .iter()
                    .find_map(|k| e.get(*k).and_then(Value::as_str).map(String::from))
                    .or_else(|| {
                        e.get("loc")
                            .and_then(Value::as_array)
                            .and_then(|l| l.last())
                            .and_then(Value::as_str)
                            .map(String::from)
                    });
                let message = ["message", "detail", "msg", "reason", "description"]
                    .iter()
                    .find_map(|k| e.get(*k).and_then(Value::as_str))
                    .unwrap_or("");
                if let Some(f) = field {
                    let f = f
                        .trim_start_matches("#/")
                        .trim_start_matches('/')
                        .rsplit(['/', '.'])
                        .next()
                        .unwrap_or("")
                        .to_string();
                    out.push((f, message.to_string()));
                }
            }
        }
        Some(Value::Object(m)) => {
            for (k, x) in m {
                let message = match x {
                    Value::Array(a) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; "),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                out.push((k.clone(), message));
            }
        }
        _ => {}
    }
    out
}

/// The first value of a message like `must be one of: todo, in_progress, done`.
fn allowed_value(message: &str) -> Option<String> {
    let lower = message.to_lowercase();
    let i = lower.find("one of")?;
    let rest = message[i + 6..].trim_start();
    // `one of: a, b` or `one of [a, b]`, not prose like "exactly one of x and y".
    if !rest.starts_with([':', '[', '(']) {
        return None;
    }
    let rest = rest.trim_start_matches([':', ' ', '[', '(']);
    let first = rest
        .split([',', ' ', ']', ')', '|'])
        .find(|s| !s.is_empty())?;
    Some(first.trim_matches(['"', '\'', '`']).to_string())
}

/// Whether a concrete path fits a template segment by segment.
fn same_shape(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(a, b)| (a.starts_with('{') && a.ends_with('}')) || a == b)
}

impl Cell {
    /// For list-shaped answers a 2xx to both A's and a random id is the expected
    /// (empty) answer, not an undecided one.
    fn relax_ok(self) -> Cell {
        if self.verdict == Verdict::Inconclusive
            && self.evidence.contains("for A's id and a random one alike")
        {
            Cell::new(
                Verdict::Blocked,
                self.evidence.replace("alike", "alike, without A's rows"),
            )
        } else {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn random_ids_keep_their_shape() {
        let u = "018f3c2e-5b7a-7c1d-9e2f-3a4b5c6d7e8f";
        let r = id_str(&random_like(&json!(u)));
        assert_ne!(r, u);
        assert_eq!(
            uuid::Uuid::parse_str(&r).map(|x| x.get_version_num()).ok(),
            Some(7)
        );
        assert!(random_like(&json!(12)).is_number());
        let s = id_str(&random_like(&json!("prj_Ab12")));
        assert!(s.starts_with("prj_") && s.len() == 8, "{s}");
    }

    #[test]
    fn masks_ids_and_times() {
        let a = json!({"detail": "task 42 not found", "at": "2030-01-01T00:00:00Z", "request_id": "x1"});
        let b = json!({"detail": "task 7000123 not found", "at": "2031-01-01T00:00:00Z", "request_id": "y2"});
        assert_eq!(
            mask(&a, &["42".into(), "7000123".into()]),
            mask(&b, &["42".into(), "7000123".into()])
        );
    }

    #[test]
    fn envelopes_and_next_links() {
        let v = json!({"data": [{"id": 1}, {"id": 2}], "links": {"next": "/things?page=2"}});
        assert_eq!(items_of(&v).len(), 2);
        let a = Answer {
            status: 200,
            headers: Default::default(),
            json: v,
            text: String::new(),
        };
        assert!(matches!(next_of(&a), Some(Next::Url(u)) if u == "/things?page=2"));
        let a = Answer {
            status: 200,
            headers: Default::default(),
            json: json!({"items": [], "next_cursor": "abc"}),
            text: String::new(),
        };
        assert!(matches!(next_of(&a), Some(Next::Token(t)) if t == "abc"));
        assert!(same_shape("/p/{id}/n/{nid}", "/p/1/n/2"));
        assert_eq!(
            fill("/p/{id}", &[("id".into(), "a b".into())]).as_deref(),
            Some("/p/a%20b")
        );
    }
}
