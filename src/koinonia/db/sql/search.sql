-- Member search folds case and accents: `members.search_name` (a stored generated column), its
-- trigram and prefix indexes, and the search queries call this function.
--
-- An index needs an IMMUTABLE function, and unaccent() alone is only STABLE (its dictionary
-- could change), so the dictionary is pinned (schema-qualified, as the function runs with any
-- search_path) and the function declared immutable. Changing it means rebuilding search_name and
-- the indexes on it.

CREATE OR REPLACE FUNCTION koinonia_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$;
