//! Values that satisfy a resolved schema: enums, formats, patterns, bounds, `oneOf`/`anyOf`,
//! nullable types; strings carry the tenant's marker so a leak can be recognised anywhere.

use rand::Rng;
use serde_json::{json, Map, Value};

use super::spec::{is_read_only, properties_of, required_of};

/// What to put in generated strings and references.
pub struct Gen<'a> {
    /// The marker every generated string contains (`tga1b2c3d4`).
    pub marker: &'a str,
    /// A counter that makes each value unique.
    pub seq: &'a mut u32,
}

impl Gen<'_> {
    fn next(&mut self) -> u32 {
        *self.seq += 1;
        *self.seq
    }

    /// An object with the required properties (and those in `extra`), with values from
    /// `fixed` where given. Read-only properties are never sent.
    pub fn object(
        &mut self,
        schema: &Value,
        extra: &[String],
        fixed: &Map<String, Value>,
        all_optional: bool,
    ) -> Value {
        let required = required_of(schema);
        let mut out = Map::new();
        for (name, s) in properties_of(schema) {
            if is_read_only(&s) {
                continue;
            }
            if let Some(v) = fixed.get(&name) {
                out.insert(name, v.clone());
            } else if required.contains(&name) || extra.contains(&name) || all_optional {
                let v = self.value(&s, &name);
                out.insert(name, v);
            }
        }
        Value::Object(out)
    }

    /// A value for `schema`, guided by the field `name` where the schema says little.
    pub fn value(&mut self, schema: &Value, name: &str) -> Value {
        self.value_at(schema, name, 0)
    }

    fn value_at(&mut self, schema: &Value, name: &str, depth: usize) -> Value {
        if depth > 8 {
            return Value::Null;
        }
        if let Some(c) = schema.get("const") {
            return c.clone();
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array) {
            return pick_enum(e);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(alts) = schema.get(key).and_then(Value::as_array) {
                if let Some(alt) = alts.iter().find(|a| type_of(a) != Some("null")) {
                    return self.value_at(alt, name, depth + 1);
                }
            }
        }
        match type_of(schema) {
            Some("integer") => json!(int_in(schema)),
            Some("number") => {
                let v = int_in(schema) as f64;
                json!(v)
            }
            Some("boolean") => Value::Bool(true),
            Some("array") => {
                let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
                let max = schema.get("maxItems").and_then(Value::as_u64);
                let n = if max == Some(0) { 0 } else { min.max(1) };
                let items = schema.get("items").cloned().unwrap_or(Value::Null);
                Value::Array(
                    (0..n)
                        .map(|_| self.value_at(&items, name, depth + 1))
                        .collect(),
                )
            }
            Some("object") => {
                let mut out = Map::new();
                let req = required_of(schema);
                for (n, s) in properties_of(schema) {
                    if req.contains(&n) && !is_read_only(&s) {
                        let v = self.value_at(&s, &n, depth + 1);
                        out.insert(n, v);
                    }
                }
                Value::Object(out)
            }
            Some("null") => Value::Null,
            _ => Value::String(self.string(schema, name)),
        }
    }

    /// A string for the schema's format, pattern and length, with the marker when the
    /// constraints allow one.
    pub fn string(&mut self, schema: &Value, name: &str) -> String {
        let n = self.next();
        let m = self.marker;
        let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
        let lname = name.to_lowercase();
        let candidate = match format {
            "uuid" => uuid::Uuid::new_v4().to_string(),
            "email" | "idn-email" => format!("{m}.{n}@example.com"),
            "uri" | "url" | "iri" | "uri-reference" => format!("https://example.com/{m}/{n}"),
            "hostname" | "idn-hostname" => format!("{m}-{n}.example.com"),
            "ipv4" => "192.0.2.10".into(),
            "ipv6" => "2001:db8::10".into(),
            "date" => "2030-01-15".into(),
            "date-time" => "2030-01-15T10:00:00Z".into(),
            "time" => "10:00:00Z".into(),
            "byte" => "dGVuYW50Z3VhcmQ=".into(),
            "password" => format!("Pw-{m}-{n}-x9!"),
            _ if lname.contains("email") => format!("{m}.{n}@example.com"),
            _ if lname.contains("url")
                || lname.contains("uri")
                || lname.contains("website")
                || lname.contains("link") =>
            {
                format!("https://example.com/{m}/{n}")
            }
            _ if lname.contains("currency") => "EUR".into(),
            _ if lname.contains("country") => "DE".into(),
            _ if lname.contains("phone") => format!("+49301234{n:04}"),
            _ if lname.contains("color") || lname.contains("colour") => "#336699".into(),
            _ if lname.contains("locale") || lname.contains("lang") => "en".into(),
            _ if lname.contains("timezone") || lname == "tz" => "UTC".into(),
            _ => format!("{m} {name} {n}"),
        };
        let candidate = fit_length(candidate, schema, m, n);
        match schema.get("pattern").and_then(Value::as_str) {
            Some(p) => from_pattern(p, &candidate, m, n),
            None => candidate,
        }
    }
}

/// The least privileged-looking enum value (`viewer` over `owner`), else the first.
fn pick_enum(e: &[Value]) -> Value {
    let meek = [
        "viewer", "read", "reader", "readonly", "guest", "member", "user",
    ];
    e.iter()
        .find(|v| {
            v.as_str()
                .is_some_and(|s| meek.contains(&s.to_lowercase().as_str()))
        })
        .or_else(|| e.iter().find(|v| !v.is_null()))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The schema's type (the first non-null one of a 3.1 type array).
pub fn type_of(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(s)) => Some(s.as_str()),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or(Some("null")),
        _ if schema.get("properties").is_some() => Some("object"),
        _ => None,
    }
}

fn int_in(schema: &Value) -> i64 {
    let min = schema
        .get("minimum")
        .and_then(Value::as_f64)
        .map(|m| {
            if schema.get("exclusiveMinimum") == Some(&Value::Bool(true)) {
                m.floor() as i64 + 1
            } else {
                m.ceil() as i64
            }
        })
        .or_else(|| {
            schema
                .get("exclusiveMinimum")
                .and_then(Value::as_f64)
                .map(|m| m.floor() as i64 + 1)
        });
    let max = schema
        .get("maximum")
        .and_then(Value::as_f64)
        .map(|m| m.floor() as i64)
        .or_else(|| {
            schema
                .get("exclusiveMaximum")
                .and_then(Value::as_f64)
                .map(|m| m.ceil() as i64 - 1)
        });
    let mut v = min.unwrap_or(1);
    if let Some(step) = schema
        .get("multipleOf")
        .and_then(Value::as_f64)
        .filter(|s| *s >= 1.0)
    {
        let step = step as i64;
        v = ((v + step - 1).div_euclid(step)) * step;
    }
    if let Some(max) = max {
        v = v.min(max);
    }
    v
}

fn fit_length(s: String, schema: &Value, m: &str, n: u32) -> String {
    let min = schema.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = schema
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|v| v as usize);
    let mut s = s;
    while s.chars().count() < min {
        s.push('x');
    }
    if let Some(max) = max {
        if s.chars().count() > max {
            // Keep the marker if it fits, then the counter.
            let short = format!("{m}{n}");
            s = if short.chars().count() <= max {
                short
            } else {
                short
                    .chars()
                    .rev()
                    .take(max)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect()
            };
        }
    }
    s
}

/// A string matching `pattern`: the candidate if it matches, else one with the marker
/// (and counter) if that matches, else one generated from the pattern.
fn from_pattern(pattern: &str, candidate: &str, m: &str, n: u32) -> String {
    let Ok(re) = regex::Regex::new(pattern) else {
        return candidate.to_string();
    };
    for c in [candidate.to_string(), format!("{m}{n}"), format!("{m}-{n}")] {
        if re.is_match(&c) {
            return c;
        }
    }
    // A generated string is a whole match already; rand_regex does not take anchors.
    let bare = pattern.trim_start_matches('^').trim_end_matches('$');
    match rand_regex::Regex::compile(bare, 8) {
        Ok(g) => {
            let mut rng = rand::thread_rng();
            for _ in 0..20 {
                let s: String = rng.sample(&g);
                if re.is_match(&s) {
                    return s;
                }
            }
            rng.sample(&g)
        }
        Err(_) => candidate.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_schema() {
        let mut seq = 0;
        let mut g = Gen {
            marker: "tgaabc",
            seq: &mut seq,
        };
        let schema = json!({"type": "object", "required": ["code", "email", "n", "role", "tags", "kind"],
        "properties": {
            "id": {"type": "integer", "readOnly": true},
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
            "email": {"type": "string", "format": "email"},
            "n": {"type": "integer", "minimum": 5, "maximum": 9, "multipleOf": 3},
            "role": {"enum": ["owner", "admin", "viewer"]},
            "tags": {"type": "array", "minItems": 2, "items": {"type": "string", "maxLength": 4}},
            "kind": {"oneOf": [{"type": "null"}, {"type": "boolean"}]},
            "optional": {"type": "string"}
        }});
        let v = g.object(&schema, &[], &Map::new(), false);
        assert!(v.get("id").is_none() && v.get("optional").is_none());
        let code = v["code"].as_str().expect("code");
        assert!(
            regex::Regex::new("^[A-Z]{3}-[0-9]{4}$")
                .expect("re")
                .is_match(code),
            "{code}"
        );
        assert!(v["email"].as_str().expect("email").starts_with("tgaabc."));
        assert_eq!(v["n"], json!(6));
        assert_eq!(v["role"], json!("viewer"));
        assert_eq!(v["tags"].as_array().map(Vec::len), Some(2));
        assert!(v["tags"][0].as_str().expect("tag").chars().count() <= 4);
        assert_eq!(v["kind"], json!(true));
    }
}
