//! Authentication: API keys (revocation, the key cache), JWTs (HS/RS/ES), admin vs tenant credentials.

use crate::helpers::*;
use serde_json::json;

fn jwt(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn credentials_are_checked_and_revocation_is_immediate() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    app.send("GET", "/v1/projects", None, None)
        .await
        .problem(401);
    for bad in ["garbage", "tgk_", "tgk_zz_zz", &format!("{}x", a.key)] {
        app.get("/v1/projects", bad).await.problem(401);
    }
    // a's secret with b's tenant: looked up in b's scope, found nothing.
    let secret = a.key.rsplit('_').next().unwrap();
    let forged = format!("tgk_{}_{secret}", b.id.replace('-', ""));
    app.get("/v1/projects", &forged).await.problem(401);
    // Revocation takes effect at once.
    let k = app
        .post(
            "/v1/api-keys",
            &a.key,
            json!({ "name": "temp", "role": "member" }),
        )
        .await;
    let (kid, key) = (
        k.ok(201)["id"].as_str().unwrap().to_string(),
        k.body["api_key"].as_str().unwrap().to_string(),
    );
    app.get("/v1/projects", &key).await.ok(200);
    app.get("/v1/projects", &key).await.ok(200);
    app.delete(&format!("/v1/api-keys/{kid}"), &a.key)
        .await
        .ok(204);
    app.get("/v1/projects", &key).await.problem(401);
    // last_used_at is recorded (flushed in the background, no write per request).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    // Read from the list: a revoked key's own GET is 404 (its DELETE is done).
    app.get(&format!("/v1/api-keys/{kid}"), &a.key)
        .await
        .problem(404);
    let list = app.get("/v1/api-keys?limit=200", &a.key).await;
    let meta = list.ok(200)["items"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["id"] == kid.as_str()).cloned())
        .expect("the revoked key is listed");
    assert!(meta["last_used_at"].is_string(), "{meta}");
    app.stop().await;
}

#[tokio::test]
async fn a_key_revoked_on_another_server_stops_working_within_the_cache_ttl() {
    let ttl = std::time::Duration::from_secs(1);
    let app = spawn_app_with(|c| c.key_cache_ttl = ttl).await;
    let replica = spawn_replica(&app, |c| c.key_cache_ttl = ttl).await;
    let a = app.tenant("a").await;
    let k = app
        .post(
            "/v1/api-keys",
            &a.key,
            json!({ "name": "t", "role": "viewer" }),
        )
        .await;
    let (kid, key) = (
        k.ok(201)["id"].as_str().unwrap().to_string(),
        k.body["api_key"].as_str().unwrap().to_string(),
    );
    replica.get("/v1/projects", &key).await.ok(200); // now cached on the replica
    app.delete(&format!("/v1/api-keys/{kid}"), &a.key)
        .await
        .ok(204);
    let revoked_at = std::time::Instant::now();
    loop {
        let r = replica.get("/v1/projects", &key).await;
        if r.status == 401 {
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            revoked_at.elapsed() < ttl * 3,
            "still accepted after the TTL"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    replica.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn jwts_carry_tenant_and_role_and_are_validated() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    let exp = chrono::Utc::now().timestamp() + 600;
    let good = jwt(
        json!({ "sub": "u1", "tenant_id": a.id, "role": "member", "exp": exp }),
        JWT_SECRET,
    );
    let p = app
        .post("/v1/projects", &good, json!({ "name": "by jwt" }))
        .await;
    let pid = p.ok(201)["id"].as_str().unwrap().to_string();
    let viewer = jwt(
        json!({ "sub": "u2", "tenant_id": a.id, "role": "viewer", "exp": exp }),
        JWT_SECRET,
    );
    app.get(&format!("/v1/projects/{pid}"), &viewer)
        .await
        .ok(200);
    app.post("/v1/projects", &viewer, json!({ "name": "no" }))
        .await
        .problem(403);
    // A well-signed token for a tenant that does not exist reads nothing, writes nothing.
    let ghost = jwt(
        json!({ "sub": "g", "tenant_id": uuid::Uuid::now_v7(), "role": "owner", "exp": exp }),
        JWT_SECRET,
    );
    assert_eq!(
        app.get("/v1/projects", &ghost).await.ok(200)["items"],
        json!([])
    );
    app.post("/v1/projects", &ghost, json!({ "name": "x" }))
        .await
        .problem(403);
    app.post(
        "/v1/members",
        &ghost,
        json!({ "email": "g@x.example", "role": "viewer" }),
    )
    .await
    .problem(403);
    let audit = app
        .get(&format!("/v1/audit-log?resource_id={pid}"), &a.key)
        .await;
    assert_eq!(audit.ok(200)["items"][0]["actor"], "user:u1");
    for bad in [
        jwt(
            json!({ "sub": "u1", "tenant_id": a.id, "role": "member", "exp": exp - 3600 }),
            JWT_SECRET,
        ),
        jwt(
            json!({ "sub": "u1", "tenant_id": a.id, "role": "member", "exp": exp }),
            "wrong-secret-wrong-secret",
        ),
        jwt(
            json!({ "sub": "u1", "role": "member", "exp": exp }),
            JWT_SECRET,
        ),
        jwt(
            json!({ "sub": "u1", "tenant_id": "nope", "role": "member", "exp": exp }),
            JWT_SECRET,
        ),
        jwt(
            json!({ "sub": "u1", "tenant_id": a.id, "role": "superuser", "exp": exp }),
            JWT_SECRET,
        ),
        jwt(
            json!({ "sub": "u1", "tenant_id": a.id, "role": "member" }),
            JWT_SECRET,
        ),
    ] {
        app.get("/v1/projects", &bad).await.problem(401);
    }
    app.stop().await;
}

#[tokio::test]
async fn rs256_and_es256_public_keys_verify_jwts() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use tenantguard::http::{JwtConfig, JwtKey};
    // Test-only key pairs (tests/api/keys), made with openssl.
    let cases = [
        (
            Algorithm::RS256,
            JwtKey::Rs256Pem(include_bytes!("keys/rs256-public.pem").to_vec()),
            EncodingKey::from_rsa_pem(include_bytes!("keys/rs256-private.pem")).unwrap(),
        ),
        (
            Algorithm::ES256,
            JwtKey::Es256Pem(include_bytes!("keys/es256-public.pem").to_vec()),
            EncodingKey::from_ec_pem(include_bytes!("keys/es256-private.pem")).unwrap(),
        ),
    ];
    for (alg, public, private) in cases {
        let app = spawn_app_with(|c| {
            c.jwt = Some(JwtConfig {
                key: public,
                leeway_secs: 5,
                issuer: Some("https://idp.example".into()),
                audience: None,
            })
        })
        .await;
        let a = app.tenant("a").await;
        let exp = chrono::Utc::now().timestamp() + 600;
        let claims = json!({ "sub": "u", "tenant_id": a.id, "role": "viewer", "exp": exp, "iss": "https://idp.example" });
        let good = jsonwebtoken::encode(&Header::new(alg), &claims, &private).unwrap();
        app.get("/v1/projects", &good).await.ok(200);
        let mut wrong_iss = claims.clone();
        wrong_iss["iss"] = json!("https://evil.example");
        let bad = jsonwebtoken::encode(&Header::new(alg), &wrong_iss, &private).unwrap();
        app.get("/v1/projects", &bad).await.problem(401);
        // An HS256 token "signed" with the public key (algorithm confusion) is refused.
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(include_bytes!("keys/rs256-public.pem")),
        )
        .unwrap();
        app.get("/v1/projects", &confused).await.problem(401);
        app.stop().await;
    }
}

#[tokio::test]
async fn admin_and_tenant_credentials_never_cross() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    app.get("/v1/projects", ADMIN_TOKEN).await.problem(401);
    app.get("/admin/v1/tenants", &a.key).await.problem(401);
    app.send("GET", "/admin/v1/tenants", None, None)
        .await
        .problem(401);
    app.get("/admin/v1/tenants", "not-the-token")
        .await
        .problem(401);
    app.post("/admin/v1/tenants", &a.key, json!({ "name": "evil" }))
        .await
        .problem(401);
    app.stop().await;
}
