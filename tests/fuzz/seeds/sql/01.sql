DO $$ BEGIN RAISE NOTICE 'x'; END $$;
/* unterminated comment