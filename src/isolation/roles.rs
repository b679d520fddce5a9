//! The unsafe-role rule, stated once: a role must not back the app (and the audit reports
//! it when it does) if it, or a role it reaches through membership, is a superuser or has
//! BYPASSRLS, or if it reaches the owner of a tenant table. The pool's start-up refusal
//! (`pool::safety`, one cheap query valid behind a transaction pooler), the audit's catalog
//! (TG003, TG030, TG031) and `rls apply`'s plan read membership with the fragments below.
//!
//! Membership by server version: PostgreSQL 15 lets every member `SET ROLE` to the role.
//! PostgreSQL 16 split each grant into INHERIT (use the role's privileges, owner rights
//! over its views and SECURITY DEFINER functions included, which then run with its
//! attributes), SET (`SET ROLE` to it) and ADMIN (grant it, also to oneself `WITH SET
//! TRUE`). A grant with none of the three confers nothing, and every chain that does confer
//! something consists of grants with at least one, so following those grants misses no way
//! in (it may count a chain that mixes them in an order PostgreSQL would not honour: fail
//! closed). `pg_has_role(…, 'MEMBER')` would also count grants with none of them.

/// The first server version with per-grant INHERIT/SET options (`server_version_num`).
pub const PER_GRANT_OPTIONS: i32 = 160000;

/// The role attributes that skip every policy, FORCE included (on a `pg_roles` row `r`).
pub const BYPASSES_RLS: &str = "(r.rolsuper OR r.rolbypassrls)";

/// The roles `start` (an SQL expression yielding a role name: `current_user`, `$1::text`)
/// can reach through role membership, as a recursive CTE named `reach(oid)` (`start`
/// itself included), for the server's version. The database owner is an implicit member
/// of `pg_database_owner` (no `pg_auth_members` row).
pub fn reach_cte(server_version_num: i32, start: &str) -> String {
    let grant_confers = if server_version_num >= PER_GRANT_OPTIONS {
        "m.set_option OR m.inherit_option OR m.admin_option"
    } else {
        "true"
    };
    format!(
        "WITH RECURSIVE reach(oid) AS (
             SELECT oid FROM pg_roles WHERE rolname = {start}
                 OR (rolname = 'pg_database_owner' AND pg_has_role({start}, oid, 'MEMBER'))
           UNION
             SELECT m.roleid FROM pg_auth_members m JOIN reach ON m.member = reach.oid
             WHERE {grant_confers}
         )"
    )
}

/// The `pg_has_role` mode that means "can `SET ROLE` to it": `SET` from PostgreSQL 16 on,
/// `MEMBER` before (where every membership allows it, and `SET` is not a mode yet).
pub fn set_role_mode(server_version_num: i32) -> &'static str {
    if server_version_num >= PER_GRANT_OPTIONS {
        "SET"
    } else {
        "MEMBER"
    }
}

/// Whether `CREATEROLE` lets a role grant itself any non-superuser role (BYPASSRLS roles
/// and table owners included): up to PostgreSQL 15. From 16 on it needs ADMIN OPTION.
pub fn createrole_is_unsafe(server_version_num: i32) -> bool {
    server_version_num < PER_GRANT_OPTIONS
}

/// The condition that the owner of `pg_class` row `c` is reached (`reach` in scope, see
/// [`reach_cte`]): an owner can `ALTER TABLE … NO FORCE`, disable RLS and drop policies,
/// FORCE or not.
pub const OWNER_REACHED: &str = "c.relowner IN (SELECT oid FROM reach)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_grant_options_only_from_16() {
        assert!(reach_cte(150000, "current_user").contains("WHERE true"));
        assert!(reach_cte(160000, "$1::text").contains("m.set_option OR m.inherit_option"));
        assert!(reach_cte(160000, "$1::text").contains("rolname = $1::text"));
        assert_eq!(set_role_mode(150020), "MEMBER");
        assert_eq!(set_role_mode(170000), "SET");
        assert!(createrole_is_unsafe(150000) && !createrole_is_unsafe(160000));
    }
}
