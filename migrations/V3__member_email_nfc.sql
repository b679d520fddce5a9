-- Member emails are stored NFC-normalised and lower-cased (the API does both before the
-- uniqueness check), so the NFC and NFD spellings of one address are one member.
--
-- Existing rows that are one address once normalised are NOT merged silently: merging
-- would pick one member's role, tasks and comments over the other's. The migration stops
-- and lists them; resolve them by hand (delete or rename one of each pair), then migrate
-- again. Rows that are merely not normalised, without a twin, are normalised here.
DO $tg$
DECLARE
    v_dups text;
    v_forced boolean;
BEGIN
    -- Migrations run as the owner role, which FORCE ROW LEVEL SECURITY confines like the
    -- app (with no tenant set: no rows at all). Lift it for this transaction only.
    SELECT relforcerowsecurity INTO v_forced FROM pg_catalog.pg_class
     WHERE oid = 'public.team_members'::regclass;
    ALTER TABLE public.team_members NO FORCE ROW LEVEL SECURITY;
    SELECT string_agg(format('tenant %s: %s', d.tenant_id, d.emails), '; ' ORDER BY d.tenant_id, d.emails)
      INTO v_dups
      FROM (SELECT tenant_id, string_agg(format('%L (member %s)', email, id), ', ' ORDER BY email, id) AS emails
              FROM team_members
             GROUP BY tenant_id, lower(normalize(email, NFC))
            HAVING count(*) > 1) d;
    IF v_dups IS NOT NULL THEN
        RAISE EXCEPTION 'team_members has emails that are the same address once NFC-normalised and lower-cased; refusing to merge them: %', v_dups
            USING HINT = 'Delete or change one member of each group, then run the migration again.';
    END IF;
    UPDATE team_members SET email = lower(normalize(email, NFC))
     WHERE email IS DISTINCT FROM lower(normalize(email, NFC));
    IF v_forced THEN
        ALTER TABLE public.team_members FORCE ROW LEVEL SECURITY;
    END IF;
END
$tg$;

ALTER TABLE team_members
    ADD CONSTRAINT team_members_email_nfc CHECK (email IS NFC NORMALIZED);
