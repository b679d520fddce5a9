//! What `probe http` learns from an OpenAPI 3.0/3.1 document: resources (collections,
//! items, nested parents), their operations, which body fields and query parameters refer
//! to which resource, and fully resolved schemas to generate bodies from.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use super::HttpProbeError;

/// How deep `$ref`s are followed (recursive schemas stop here).
const MAX_DEPTH: usize = 12;

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamIn {
    /// In the path template.
    Path,
    /// In the query string.
    Query,
    /// A request header.
    Header,
}

/// One parameter of an operation.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: String,
    /// Where it goes.
    pub location: ParamIn,
    /// Whether it is required.
    pub required: bool,
    /// Its resolved schema.
    pub schema: Value,
    /// Its description (used to guess what it refers to).
    pub description: String,
}

/// One operation (method × path).
#[derive(Debug, Clone)]
pub struct Operation {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path template as written in the document.
    pub path: String,
    /// Its parameters (path-level ones included).
    pub params: Vec<Param>,
    /// The resolved JSON request body schema, if any.
    pub body: Option<Value>,
    /// The name of a documented `Idempotency-Key` header.
    pub idempotency_header: Option<String>,
}

impl Operation {
    /// The query parameters.
    pub fn query(&self) -> impl Iterator<Item = &Param> {
        self.params.iter().filter(|p| p.location == ParamIn::Query)
    }

    /// The path parameter names in template order.
    pub fn path_params(&self) -> Vec<String> {
        template_params(&self.path)
    }
}

/// A field or parameter that refers to another resource.
#[derive(Debug, Clone)]
pub struct RefField {
    /// The field or parameter name.
    pub field: String,
    /// The index of the resource it refers to.
    pub target: usize,
    /// Whether the body requires it.
    pub required: bool,
}

/// A resource: a collection path and its item path.
#[derive(Debug, Clone, Default)]
pub struct Resource {
    /// The collection's last literal segment (`tasks`).
    pub name: String,
    /// The collection path template (`/projects/{projectId}/notes`).
    pub collection: String,
    /// The item path template, if the document has one.
    pub item: Option<String>,
    /// List (`GET collection`).
    pub list: Option<Operation>,
    /// Create (`POST collection`).
    pub create: Option<Operation>,
    /// Read one (`GET item`).
    pub get: Option<Operation>,
    /// Partial update.
    pub patch: Option<Operation>,
    /// Full replacement.
    pub put: Option<Operation>,
    /// Delete.
    pub delete: Option<Operation>,
    /// Path parameters of the collection that name a parent: (parameter, resource).
    pub parents: Vec<(String, usize)>,
    /// Create-body fields that refer to other resources.
    pub body_refs: Vec<RefField>,
    /// Patch-body fields that refer to other resources.
    pub patch_refs: Vec<RefField>,
    /// List query parameters that refer to other resources.
    pub filter_refs: Vec<RefField>,
    /// Free-text search parameters of the list.
    pub search_params: Vec<String>,
    /// Tenant-like fields the create body declares (`tenant_id`, `orgId`, …).
    pub tenant_fields: Vec<String>,
}

impl Resource {
    /// The item path parameter (the last one of the item template).
    pub fn item_param(&self) -> Option<String> {
        self.item.as_deref().and_then(|t| template_params(t).pop())
    }

    /// Singular stem of the name (`tasks` → `task`), normalized.
    pub fn singular(&self) -> String {
        singular(&norm(&self.name))
    }
}

/// The learned model of an API.
#[derive(Debug, Clone)]
pub struct Spec {
    /// `openapi` version string.
    pub version: String,
    /// A relative `servers[0].url` (appended to `--base`), or empty.
    pub base_path: String,
    /// What the reader noticed (an absolute server URL ignored, unsupported bodies, …).
    pub notes: Vec<String>,
    /// Resources, in document order.
    pub resources: Vec<Resource>,
}

/// Parses a document (JSON or YAML).
pub fn parse_document(text: &str) -> Result<Value, HttpProbeError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        serde_json::from_str(text)
            .map_err(|e| HttpProbeError::OpenApi(format!("not valid JSON: {e}")))
    } else {
        serde_norway::from_str::<Value>(text)
            .map_err(|e| HttpProbeError::OpenApi(format!("neither JSON nor valid YAML: {e}")))
    }
}

/// Builds the model from a parsed document.
pub fn learn(doc: &Value) -> Result<Spec, HttpProbeError> {
    let version = doc
        .get("openapi")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            HttpProbeError::OpenApi(
                "no `openapi` version field: only OpenAPI 3.0/3.1 documents are supported (convert Swagger 2.0 first)".into(),
            )
        })?
        .to_string();
    if !version.starts_with("3.") {
        return Err(HttpProbeError::OpenApi(format!(
            "OpenAPI {version} is not supported (3.0 and 3.1 are)"
        )));
    }
    let mut notes = Vec::new();
    let mut base_path = String::new();
    if let Some(url) = doc
        .pointer("/servers/0/url")
        .and_then(Value::as_str)
        .map(str::trim)
    {
        if url.contains("://") {
            notes.push(format!(
                "servers[0].url {url:?} is absolute and was ignored: --base is always the target"
            ));
        } else if url.starts_with('/') {
            base_path = url.trim_end_matches('/').to_string();
        }
    }
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| HttpProbeError::OpenApi("the document has no `paths`".into()))?;
    let r = Resolver { doc };
    // Group operations by collection (normalized template).
    let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
    let mut resources: Vec<Resource> = Vec::new();
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        let item = match item.get("$ref") {
            Some(_) => r.deref(&Value::Object(item.clone()), 0),
            None => Value::Object(item.clone()),
        };
        let Some(item) = item.as_object() else {
            continue;
        };
        let shared = item
            .get("parameters")
            .map(|p| r.params(p))
            .unwrap_or_default();
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let last_is_param = segs.last().is_some_and(|s| is_param(s));
        let collection = if last_is_param {
            format!("/{}", segs[..segs.len() - 1].join("/"))
        } else {
            path.clone()
        };
        let Some(name) = collection
            .trim_matches('/')
            .split('/')
            .rev()
            .find(|s| !is_param(s) && !s.is_empty())
        else {
            continue;
        };
        let key = normalize_template(&collection);
        let idx = *by_key.entry(key).or_insert_with(|| {
            resources.push(Resource {
                name: name.to_string(),
                collection: collection.clone(),
                ..Resource::default()
            });
            resources.len() - 1
        });
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else {
                continue;
            };
            let mut params = shared.clone();
            if let Some(p) = op.get("parameters") {
                for p in r.params(p) {
                    params.retain(|q: &Param| !(q.name == p.name && q.location == p.location));
                    params.push(p);
                }
            }
            let body = op.get("requestBody").and_then(|b| {
                let b = r.deref(b, 0);
                let content = b.get("content")?.as_object()?;
                let schema = content
                    .iter()
                    .find(|(ct, _)| ct.contains("json"))
                    .and_then(|(_, m)| m.get("schema"))?;
                Some(r.resolve(schema, 0))
            });
            if body.is_none() && op.get("requestBody").is_some() {
                notes.push(format!(
                    "{} {path}: the request body has no JSON schema; probed without one",
                    method.to_uppercase()
                ));
            }
            let idempotency_header = params
                .iter()
                .find(|p| {
                    p.location == ParamIn::Header && p.name.eq_ignore_ascii_case("idempotency-key")
                })
                .map(|p| p.name.clone());
            let operation = Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                params,
                body,
                idempotency_header,
            };
            let res = &mut resources[idx];
            match (method, last_is_param) {
                ("get", false) => res.list = Some(operation),
                ("post", false) => res.create = Some(operation),
                ("get", true) => res.get = Some(operation),
                ("patch", true) => res.patch = Some(operation),
                ("put", true) => res.put = Some(operation),
                ("delete", true) => res.delete = Some(operation),
                _ => notes.push(format!(
                    "{} {path}: not a collection or item operation; not probed",
                    method.to_uppercase()
                )),
            }
            if last_is_param {
                res.item.get_or_insert_with(|| path.clone());
            }
        }
    }
    link(&mut resources);
    Ok(Spec {
        version,
        base_path,
        notes,
        resources,
    })
}

/// Finds parents, references, search parameters and tenant fields.
fn link(resources: &mut [Resource]) {
    let items: Vec<Option<String>> = resources
        .iter()
        .map(|r| r.item.as_deref().map(normalize_template))
        .collect();
    let singulars: Vec<String> = resources.iter().map(Resource::singular).collect();
    let plurals: Vec<String> = resources.iter().map(|r| norm(&r.name)).collect();
    // Several resources may share a name (`/v1/projects`, `/admin/v1/stats/projects`):
    // prefer one that has items, then the one sharing the longest path prefix.
    let score = |i: usize, me: usize| -> (bool, usize) {
        let a: Vec<&str> = resources[i].collection.split('/').collect();
        let b: Vec<&str> = resources[me].collection.split('/').collect();
        let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        (
            resources[i].item.is_some() || resources[i].create.is_some(),
            common,
        )
    };
    let best = |cands: Vec<usize>, me: usize| cands.into_iter().max_by_key(|&i| score(i, me));
    let find = |name: &str, description: &str, me: usize| -> Option<usize> {
        let n = norm(name);
        let stem = n.strip_suffix("id")?;
        if stem.is_empty() || n == "id" {
            return None;
        }
        let others = || (0..resources.len()).filter(move |&i| i != me);
        let by_name = best(
            others()
                .filter(|&i| stem == singulars[i] || stem == plurals[i])
                .collect(),
            me,
        );
        if by_name.is_some() {
            return by_name;
        }
        let by_suffix = best(
            others()
                .filter(|&i| stem.ends_with(&singulars[i]) && singulars[i].len() >= 3)
                .collect(),
            me,
        );
        if by_suffix.is_some() {
            return by_suffix;
        }
        // "Assignee (a member of this tenant)": the description names the resource.
        let d = description.to_lowercase();
        let words: Vec<&str> = d.split(|c: char| !c.is_alphanumeric()).collect();
        best(
            others()
                .filter(|&i| {
                    singulars[i].len() >= 3
                        && words.iter().any(|w| *w == singulars[i] || *w == plurals[i])
                })
                .collect(),
            me,
        )
    };
    let mut updates = Vec::new();
    for (me, res) in resources.iter().enumerate() {
        // Parents: every `{param}` segment of the collection whose prefix is an item path.
        let mut parents = Vec::new();
        let segs: Vec<&str> = res.collection.trim_matches('/').split('/').collect();
        for (i, s) in segs.iter().enumerate() {
            if is_param(s) {
                let prefix = normalize_template(&format!("/{}", segs[..=i].join("/")));
                if let Some(p) = items.iter().position(|it| it.as_deref() == Some(&prefix)) {
                    parents.push((s.trim_matches(|c| c == '{' || c == '}').to_string(), p));
                }
            }
        }
        let parent_params: HashSet<String> = parents.iter().map(|(p, _)| p.clone()).collect();
        let body_fields = |op: &Option<Operation>| -> Vec<RefField> {
            let Some(schema) = op.as_ref().and_then(|o| o.body.as_ref()) else {
                return Vec::new();
            };
            let required = required_of(schema);
            properties_of(schema)
                .into_iter()
                .filter(|(_, s)| !is_read_only(s))
                .filter_map(|(name, s)| {
                    find(&name, &description_of(&s), me).map(|target| RefField {
                        required: required.contains(&name),
                        field: name,
                        target,
                    })
                })
                .collect()
        };
        let body_refs = body_fields(&res.create);
        let patch_refs = body_fields(&res.patch);
        let mut filter_refs = Vec::new();
        let mut search_params = Vec::new();
        if let Some(list) = &res.list {
            for p in list.query() {
                if parent_params.contains(&p.name) {
                    continue;
                }
                if let Some(target) = find(&p.name, &p.description, me) {
                    filter_refs.push(RefField {
                        field: p.name.clone(),
                        target,
                        required: p.required,
                    });
                } else if [
                    "q", "query", "search", "term", "keyword", "keywords", "text",
                ]
                .contains(&norm(&p.name).as_str())
                {
                    search_params.push(p.name.clone());
                }
            }
        }
        let tenant_fields = res
            .create
            .as_ref()
            .and_then(|o| o.body.as_ref())
            .map(|s| {
                properties_of(s)
                    .into_iter()
                    .map(|(n, _)| n)
                    .filter(|n| is_tenant_field(n))
                    .collect()
            })
            .unwrap_or_default();
        updates.push((
            parents,
            body_refs,
            patch_refs,
            filter_refs,
            search_params,
            tenant_fields,
        ));
    }
    for (res, u) in resources.iter_mut().zip(updates) {
        (
            res.parents,
            res.body_refs,
            res.patch_refs,
            res.filter_refs,
            res.search_params,
            res.tenant_fields,
        ) = u;
    }
}

/// Whether a field name names the tenant (`tenant_id`, `tenantId`, `org_id`, …).
pub fn is_tenant_field(name: &str) -> bool {
    matches!(
        norm(name).as_str(),
        "tenantid"
            | "tenant"
            | "orgid"
            | "organizationid"
            | "organisationid"
            | "accountid"
            | "workspaceid"
            | "teamid"
            | "customerid"
    )
}

/// Lower-case alphanumerics only: `project_id`, `projectId`, `Project-ID` → `projectid`.
pub fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn singular(s: &str) -> String {
    if let Some(b) = s.strip_suffix("ies") {
        format!("{b}y")
    } else if s.ends_with("sses") || s.ends_with("xes") || s.ends_with("ches") {
        s[..s.len() - 2].to_string()
    } else if let Some(b) = s.strip_suffix('s') {
        b.to_string()
    } else {
        s.to_string()
    }
}

fn is_param(seg: &str) -> bool {
    seg.starts_with('{') && seg.ends_with('}')
}

/// The parameter names of a path template, in order.
pub fn template_params(t: &str) -> Vec<String> {
    t.split('/')
        .filter(|s| is_param(s))
        .map(|s| s[1..s.len() - 1].to_string())
        .collect()
}

fn normalize_template(t: &str) -> String {
    t.trim_end_matches('/')
        .split('/')
        .map(|s| if is_param(s) { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// The properties of a resolved object schema, in document order.
pub fn properties_of(schema: &Value) -> Vec<(String, Value)> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The required property names of a resolved object schema.
pub fn required_of(schema: &Value) -> HashSet<String> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the schema is `readOnly` (never sent in a request).
pub fn is_read_only(schema: &Value) -> bool {
    schema.get("readOnly").and_then(Value::as_bool) == Some(true)
}

fn description_of(schema: &Value) -> String {
    let mut d = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(a) = schema.get(key).and_then(Value::as_array) {
            for s in a {
                if let Some(x) = s.get("description").and_then(Value::as_str) {
                    d.push(' ');
                    d.push_str(x);
                }
            }
        }
    }
    d
}

struct Resolver<'a> {
    doc: &'a Value,
}

impl Resolver<'_> {
    fn params(&self, list: &Value) -> Vec<Param> {
        list.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| {
                        let p = self.deref(p, 0);
                        let location = match p.get("in")?.as_str()? {
                            "path" => ParamIn::Path,
                            "query" => ParamIn::Query,
                            "header" => ParamIn::Header,
                            _ => return None,
                        };
                        Some(Param {
                            name: p.get("name")?.as_str()?.to_string(),
                            location,
                            required: p.get("required").and_then(Value::as_bool) == Some(true),
                            schema: p
                                .get("schema")
                                .map(|s| self.resolve(s, 0))
                                .unwrap_or(Value::Null),
                            description: p
                                .get("description")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Follows `$ref`s at the top of `v` (local `#/…` pointers only).
    fn deref(&self, v: &Value, depth: usize) -> Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) if depth < MAX_DEPTH => {
                let target = r
                    .strip_prefix('#')
                    .map(|p| p.replace("~1", "/").replace("~0", "~"))
                    .and_then(|p| self.doc.pointer(&p).cloned());
                match target {
                    Some(t) => {
                        // 3.1 allows siblings next to $ref (a description, say): keep them.
                        let mut t = self.deref(&t, depth + 1);
                        if let (Some(obj), Some(src)) = (t.as_object_mut(), v.as_object()) {
                            for (k, x) in src {
                                if k != "$ref" {
                                    obj.entry(k.clone()).or_insert_with(|| x.clone());
                                }
                            }
                        }
                        t
                    }
                    None => Value::Null,
                }
            }
            _ => v.clone(),
        }
    }

    /// A schema with every `$ref` followed and `allOf` merged into one object schema;
    /// `oneOf`/`anyOf` alternatives are resolved in place.
    fn resolve(&self, v: &Value, depth: usize) -> Value {
        if depth > MAX_DEPTH {
            return Value::Object(Map::new());
        }
        let v = self.deref(v, depth);
        let Some(obj) = v.as_object() else {
            return v;
        };
        let mut out = Map::new();
        for (k, x) in obj {
            match k.as_str() {
                "properties" => {
                    let props: Map<String, Value> = x
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(n, s)| (n.clone(), self.resolve(s, depth + 1)))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.insert(k.clone(), Value::Object(props));
                }
                "items" | "additionalProperties" if x.is_object() => {
                    out.insert(k.clone(), self.resolve(x, depth + 1));
                }
                "oneOf" | "anyOf" => {
                    let alts: Vec<Value> = x
                        .as_array()
                        .map(|a| a.iter().map(|s| self.resolve(s, depth + 1)).collect())
                        .unwrap_or_default();
                    out.insert(k.clone(), Value::Array(alts));
                }
                "allOf" => {}
                _ => {
                    out.insert(k.clone(), x.clone());
                }
            }
        }
        if let Some(parts) = obj.get("allOf").and_then(Value::as_array) {
            for part in parts {
                let part = self.resolve(part, depth + 1);
                merge_into(&mut out, &part);
            }
        }
        Value::Object(out)
    }
}

fn merge_into(out: &mut Map<String, Value>, part: &Value) {
    let Some(p) = part.as_object() else {
        return;
    };
    for (k, x) in p {
        match k.as_str() {
            "properties" => {
                let target = out
                    .entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Some(t), Some(src)) = (target.as_object_mut(), x.as_object()) {
                    for (n, s) in src {
                        t.insert(n.clone(), s.clone());
                    }
                }
            }
            "required" => {
                let target = out
                    .entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let (Some(t), Some(src)) = (target.as_array_mut(), x.as_array()) {
                    for n in src {
                        if !t.contains(n) {
                            t.push(n.clone());
                        }
                    }
                }
            }
            _ => {
                out.entry(k.clone()).or_insert_with(|| x.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn learns_nested_resources_refs_and_allof() {
        let doc = json!({
            "openapi": "3.0.3",
            "servers": [{"url": "/api"}],
            "components": {"schemas": {
                "Base": {"type": "object", "properties": {"id": {"type": "integer", "readOnly": true}}},
                "NewTask": {"allOf": [{"$ref": "#/components/schemas/Base"},
                    {"type": "object", "required": ["title", "projectId"],
                     "properties": {"title": {"type": "string"}, "projectId": {"type": "integer"},
                                    "ownerId": {"type": "integer", "description": "A user."}}}]}
            }},
            "paths": {
                "/projects": {"get": {}, "post": {}},
                "/projects/{pid}": {"get": {}},
                "/projects/{pid}/notes": {"get": {}, "post": {}},
                "/users/{id}": {"get": {}},
                "/tasks": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewTask"}}}}},
                           "get": {"parameters": [{"name": "projectId", "in": "query", "schema": {"type": "integer"}},
                                                  {"name": "q", "in": "query"}]}}
            }
        });
        let spec = learn(&doc).expect("learn");
        assert_eq!(spec.base_path, "/api");
        let find = |c: &str| {
            spec.resources
                .iter()
                .position(|r| r.collection == c)
                .expect(c)
        };
        let notes = &spec.resources[find("/projects/{pid}/notes")];
        assert_eq!(notes.parents, vec![("pid".to_string(), find("/projects"))]);
        let tasks = &spec.resources[find("/tasks")];
        let body = tasks
            .create
            .as_ref()
            .and_then(|o| o.body.as_ref())
            .expect("body");
        assert!(required_of(body).contains("projectId"));
        assert!(is_read_only(&body["properties"]["id"]));
        let mut refs: Vec<_> = tasks
            .body_refs
            .iter()
            .map(|r| (r.field.as_str(), r.target, r.required))
            .collect();
        refs.sort();
        assert_eq!(
            refs,
            vec![
                ("ownerId", find("/users"), false),
                ("projectId", find("/projects"), true)
            ]
        );
        assert_eq!(tasks.filter_refs[0].target, find("/projects"));
        assert_eq!(tasks.search_params, vec!["q".to_string()]);
    }

    #[test]
    fn yaml_and_absolute_servers() {
        let doc = parse_document("openapi: 3.1.0\nservers:\n  - url: https://api.example.com/v2\npaths:\n  /things:\n    get: {}\n").expect("yaml");
        let spec = learn(&doc).expect("learn");
        assert_eq!(spec.base_path, "");
        assert!(spec.notes[0].contains("ignored"));
        assert!(learn(&serde_json::json!({"swagger": "2.0"})).is_err());
    }
}
