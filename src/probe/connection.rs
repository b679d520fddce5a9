//! The connection-level checks: what a pooled connection carries from one transaction to
//! the next. Run before the attacks, on the probe's own connection, in READ ONLY
//! transactions (committing one changes nothing):
//!
//! 1. *fresh*: a new transaction as the app, before anything set the context, must carry
//!    no tenant (a role, database or server default would show here);
//! 2. *transaction-local*: the context set with `set_config(…, true)` (on Citus: `SET
//!    LOCAL`, the form Citus carries to its workers) is gone in the next transaction, after
//!    COMMIT and after ROLLBACK;
//! 3. *helpers*: every function the app can execute that sets a context setting (the
//!    schema's own `set_tenant(…)`) is called as the app; its setting must be gone in the
//!    next transaction, and a helper that takes a secret must not accept a made-up one.
//!
//! Afterwards every context setting is RESET at session level, so nothing a helper left
//! behind reaches the attacks.

use serde::Serialize;
use tokio_postgres::Client;

use super::attacks::{Carriers, Cell};
use super::synth::Tenants;
use super::{db, ProbeError};
use crate::audit::catalog::Function;
use crate::audit::Model;
use crate::outcome::Verdict;
use crate::policy::{ident, literal};

/// One connection-level check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionCheck {
    /// What was checked: `fresh`, `transaction-local`, or `helper schema.fn(args)`.
    pub check: String,
    /// The verdict and its evidence.
    pub cell: Cell,
}

fn cell(verdict: Verdict, detail: impl Into<String>, control: Option<&str>) -> Cell {
    Cell {
        verdict,
        detail: detail.into(),
        control: control.map(String::from),
    }
}

fn err_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => crate::error_chain(e),
    }
}

async fn read_all(client: &Client, names: &[String]) -> Result<Vec<(String, String)>, ProbeError> {
    let mut out = Vec::new();
    for n in names {
        let v: Option<String> = client
            .query_one("SELECT current_setting($1, true)", &[n])
            .await
            .map_err(db("reading a context setting"))?
            .get(0);
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            out.push((n.clone(), v));
        }
    }
    Ok(out)
}

fn shown(vals: &[(String, String)]) -> String {
    vals.iter()
        .map(|(n, v)| format!("{n} = {v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a function body sets one of `names`.
fn sets_any(f: &Function, names: &[String]) -> bool {
    let body = f.source.to_lowercase();
    names.iter().any(|n| {
        let n = regex::escape(&n.to_lowercase());
        regex::Regex::new(&format!(
            r"set_config\s*\(\s*'{n}'|(^|[;\s])set\s+(local\s+|session\s+)?{n}\s*(=|to)"
        ))
        .is_ok_and(|r| r.is_match(&body))
    })
}

fn secret_like(name: &str) -> bool {
    let n = name.to_lowercase();
    [
        "secret", "token", "key", "sig", "hmac", "password", "nonce", "jwt",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// SQL arguments for a helper: the tenant for the first tenant-like argument, a made-up
/// secret for secret-like ones. Returns the argument list and whether a secret was made up.
fn arguments(f: &Function, tenant: &str, claims: &str) -> (String, bool) {
    let names: Vec<String> = f
        .args
        .split(',')
        .map(|a| a.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    let mut made_up = false;
    let args: Vec<String> = f
        .arg_types
        .iter()
        .enumerate()
        .map(|(i, ty)| {
            let name = names.get(i).map(String::as_str).unwrap_or("");
            let t = ty.to_lowercase();
            let v = if secret_like(name) && i > 0 {
                made_up = true;
                "tgprobe-not-the-secret".to_string()
            } else if t == "json" || t == "jsonb" {
                claims.to_string()
            } else if t.contains("int") || t == "numeric" {
                tenant
                    .parse::<i64>()
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "1234567".into())
            } else if t == "uuid" {
                uuid::Uuid::parse_str(tenant)
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| uuid::Uuid::new_v4().to_string())
            } else {
                tenant.to_string()
            };
            format!("CAST({} AS {ty})", literal(&v))
        })
        .collect();
    (args.join(", "), made_up)
}

/// The statements that open a check's transaction, one message each: Citus forwards a
/// multi-statement string with a `SET` whole to its workers.
struct Begin(Vec<String>);

impl Begin {
    async fn run(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        for s in &self.0 {
            client.batch_execute(s).await?;
        }
        Ok(())
    }
}

/// Runs the connection-level checks (see the module docs).
pub async fn check(client: &Client, model: &Model) -> Result<Vec<ConnectionCheck>, ProbeError> {
    let app = ident(&model.config.app_role);
    let carriers = Carriers::of(model);
    let names = carriers.names();
    // READ ONLY: committing changes nothing, and a helper that writes is refused. The
    // timeouts bound whatever a helper does.
    let begin = Begin(vec![
        "BEGIN READ ONLY".to_string(),
        "SET LOCAL statement_timeout = '10s'".to_string(),
        "SET LOCAL lock_timeout = '5s'".to_string(),
        format!("SET LOCAL ROLE {app}"),
    ]);
    let citus = model.catalog.citus.is_some();
    let carrier_text = if citus {
        "SET LOCAL (with citus.propagate_set_commands = local)"
    } else {
        "set_config(…, true)"
    };
    let mut out = Vec::new();

    // 1. A fresh transaction carries no tenant.
    begin
        .run(client)
        .await
        .map_err(db("starting the connection check"))?;
    let fresh = read_all(client, &names).await?;
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(db("ending the connection check"))?;
    out.push(ConnectionCheck {
        check: "fresh".into(),
        cell: if fresh.is_empty() {
            cell(
                Verdict::Blocked,
                format!("a new transaction as the app carries none of {}", names.join(", ")),
                Some("the settings were read before anything set them"),
            )
        } else {
            cell(
                Verdict::Leaked,
                format!(
                    "a new transaction as the app already carries {} before it sets a tenant (a role, database or server default)",
                    shown(&fresh)
                ),
                None,
            )
        },
    });

    // 2. The probe's own carrier (the contract's, set_config(…, true) today) ends with the
    //    transaction.
    let tenants = Tenants::new("uuid");
    let values = carriers.values(&tenants.text[0], &tenants.text[1]);
    let claims = values
        .iter()
        .find(|(n, _)| n == crate::isolation::JWT_CLAIMS_SETTING)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "{}".into());
    let mut seen = Vec::new();
    let mut took = true;
    for end in ["COMMIT", "ROLLBACK"] {
        begin
            .run(client)
            .await
            .map_err(db("starting the connection check"))?;
        for (n, v) in &values {
            let set = if citus {
                crate::isolation::sql::citus_context(n, v).to_vec()
            } else {
                vec![crate::isolation::ContextCarrier::default().set_statement(n, v)]
            };
            for s in set {
                client
                    .batch_execute(&s)
                    .await
                    .map_err(db("setting the context"))?;
            }
        }
        took &= read_all(client, &names).await?.len() == values.len();
        client
            .batch_execute(end)
            .await
            .map_err(db("ending the first transaction"))?;
        begin
            .run(client)
            .await
            .map_err(db("starting the second transaction"))?;
        let next = read_all(client, &names).await?;
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(db("ending the second transaction"))?;
        if !next.is_empty() {
            seen.push(format!(
                "after {end} the next transaction still had {}",
                shown(&next)
            ));
        }
    }
    out.push(ConnectionCheck {
        check: "transaction-local".into(),
        cell: if !took {
            cell(
                Verdict::Inconclusive,
                format!("{carrier_text} did not take effect"),
                None,
            )
        } else if seen.is_empty() {
            cell(
                Verdict::Blocked,
                format!("the context set with {carrier_text} was gone in the next transaction (after COMMIT and after ROLLBACK)"),
                Some("inside the transaction the context was set"),
            )
        } else {
            cell(Verdict::Leaked, seen.join("; "), None)
        },
    });

    // 3. The schema's own context helpers.
    for f in model
        .catalog
        .functions
        .iter()
        .filter(|f| f.kind == 'f' && !f.is_trigger && f.app_can_execute && sets_any(f, &names))
    {
        let (args, made_up) = arguments(f, &tenants.text[0], &claims);
        let call = format!("SELECT {}.{}({args})", ident(&f.schema), ident(&f.name));
        let label = format!("helper {}.{}({})", f.schema, f.name, f.args);
        begin
            .run(client)
            .await
            .map_err(db("starting a helper check"))?;
        let called = client.batch_execute(&call).await;
        let inside = match &called {
            Ok(()) => read_all(client, &names).await?,
            Err(_) => Vec::new(),
        };
        client
            .batch_execute(if called.is_ok() { "COMMIT" } else { "ROLLBACK" })
            .await
            .map_err(db("ending a helper check"))?;
        let c = match called {
            Err(e) => cell(
                Verdict::Inconclusive,
                format!(
                    "the helper refused the probe's call {call}: {}",
                    err_text(&e)
                ),
                None,
            ),
            Ok(()) if inside.is_empty() => cell(
                Verdict::Inconclusive,
                format!("calling it ({call}) set none of {}", names.join(", ")),
                None,
            ),
            Ok(()) => {
                begin
                    .run(client)
                    .await
                    .map_err(db("starting a helper check"))?;
                let next = read_all(client, &names).await?;
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(db("ending a helper check"))?;
                let mut leaks = Vec::new();
                if !next.is_empty() {
                    leaks.push(format!(
                        "after {call} and COMMIT the next transaction on the connection still had {}: the helper's setting outlives the transaction (pooled connections hand it to the next request)",
                        shown(&next)
                    ));
                }
                if made_up {
                    leaks.push(format!(
                        "it set the tenant context ({}) for a made-up secret: anyone who can call it picks their tenant",
                        shown(&inside)
                    ));
                }
                if leaks.is_empty() {
                    cell(
                        Verdict::Blocked,
                        "the context the helper set was gone in the next transaction",
                        Some(&format!("inside the transaction it set {}", shown(&inside))),
                    )
                } else {
                    cell(Verdict::Leaked, leaks.join("; "), None)
                }
            }
        };
        out.push(ConnectionCheck {
            check: label,
            cell: c,
        });
    }
    // Nothing a helper left at session level may reach the attacks (a NULL value resets
    // the setting to its default).
    client
        .batch_execute("RESET ROLE")
        .await
        .map_err(db("resetting the role"))?;
    for n in &names {
        client
            .execute("SELECT set_config($1, NULL, false)", &[n])
            .await
            .map_err(db("resetting a context setting"))?;
    }
    Ok(out)
}
