-- The column marking refresh tokens from before selectors, and its partial index: 0006 ended
-- the sessions still on such a token and deleted the rows.
DROP INDEX `refresh_tokens_legacy_token_hash_unique`;--> statement-breakpoint
ALTER TABLE `refresh_tokens` DROP COLUMN `legacy`;