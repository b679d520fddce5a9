// The seed's sketch (/work/shared/seed, "Step 2" and "Step 3"), made runnable as the
// baseline of bench/seed_compare.rs: Hono + node-postgres, a session-level tenant setting
// set and reset around every request, no pagination. Its flaws are kept on purpose (this
// is what tenantguard is compared against, not code to copy): the setting is
// session-level (SET/RESET, three round trips per request), a failed RESET would hand the
// next request the previous tenant, the policies cast with one-argument current_setting.
//
// Changes needed to run it, and nothing else:
// - `SET app.current_tenant_id = $1` cannot take a bind parameter (PostgreSQL's SET is a
//   utility statement: "syntax error at or near $1"), so the same session-level SET is
//   made with `SELECT set_config('app.current_tenant_id', $1, false)`.
// - The sketch's auth middleware is not shown ("set by auth middleware"); here it maps
//   the bearer key to its tenant from an in-memory table loaded at start-up (KEYS_FILE,
//   lines "<key> <tenant id>"): no hashing, no database lookup.
// - Connection settings come from PGHOST/PGPORT/PGDATABASE (node-postgres reads them);
//   the user is app_user, as in the sketch.
import { readFileSync } from "node:fs";
import { Hono } from "hono";
import { serve } from "@hono/node-server";
import pg from "pg";

const appPool = new pg.Pool({ user: "app_user", max: 20 });

const keys = new Map();
for (const line of readFileSync(process.env.KEYS_FILE, "utf8").split("\n")) {
  const [key, tenant] = line.trim().split(" ");
  if (key && tenant) keys.set(key, tenant);
}

function auth() {
  return async (c, next) => {
    const h = c.req.header("authorization") || "";
    const tenantId = keys.get(h.replace(/^Bearer /, ""));
    if (!tenantId) return c.json({ error: "Unauthorized" }, 401);
    c.set("tenantId", tenantId);
    await next();
  };
}

// Step 2: the tenant context middleware.
function tenantContext() {
  return async (c, next) => {
    const tenantId = c.get("tenantId");
    if (!tenantId) {
      return c.json({ error: "Tenant context required" }, 403);
    }
    const client = await appPool.connect();
    try {
      await client.query("SELECT set_config('app.current_tenant_id', $1, false)", [tenantId]);
      c.set("db", client);
      c.set("tenantId", tenantId);
      await next();
    } finally {
      await client.query("RESET app.current_tenant_id");
      client.release();
    }
  };
}

function getDB(c) {
  const db = c.get("db");
  if (!db) throw new Error("Database client not available — is tenantContext middleware applied?");
  return db;
}

// Step 3: the routes this comparison drives (list and get).
const projects = new Hono();
projects.get("/projects", async (c) => {
  const db = getDB(c);
  const { rows } = await db.query(
    "SELECT id, name, description, created_at FROM projects ORDER BY created_at DESC"
  );
  return c.json({ projects: rows });
});
projects.get("/projects/:id", async (c) => {
  const db = getDB(c);
  const { id } = c.req.param();
  const { rows } = await db.query(
    "SELECT id, name, description, created_at FROM projects WHERE id = $1",
    [id]
  );
  if (rows.length === 0) return c.json({ error: "Project not found" }, 404);
  return c.json({ project: rows[0] });
});

const app = new Hono();
app.get("/healthz", (c) => c.text("ok"));
app.use("/v1/*", auth(), tenantContext());
app.route("/v1", projects);

serve({ fetch: app.fetch, hostname: "127.0.0.1", port: Number(process.env.PORT || 3000) });
