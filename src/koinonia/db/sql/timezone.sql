-- A church's timezone must be a zone PostgreSQL can convert to: the churches table CHECKs it
-- (ck_churches_timezone). Python's zoneinfo accepted names the server's tz database does not
-- know (`right/...`, `posix/...`, `localtime`, `posixrules`), and a church saved with one made
-- every statement converting to its local time fail (stats, every inbound text: a STOP never
-- applied). The API accepts canonical IANA names only (kit/schemas.py); the names it refuses as
-- not canonical are refused here too.
--
-- IMMUTABLE: the answer changes only with the server's tz database, i.e. a reinstall. The
-- conversion is tried on a fixed instant (no scan of pg_timezone_names, which reads every zone
-- file).

CREATE OR REPLACE FUNCTION koinonia_is_timezone(tz text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF tz IS NULL OR tz ~ '^(posix|right)/' OR tz IN ('localtime', 'posixrules', 'Factory') THEN
        RETURN false;
    END IF;
    PERFORM TIMESTAMPTZ '2000-01-01 00:00:00+00' AT TIME ZONE tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END $$;
